"""One picture of a bench run: every figure's ratio to its reference, with its goal marked.

    python benchmarks/plot_summary.py benchmarks/results/<yyyy-mm-ddThhmmZ>.json

Writes benchmarks/results/summary.png (runs in the image: matplotlib lives there, not on the host).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from tfdock.files import atomic_path


def main() -> None:
    run = json.loads(Path(sys.argv[1]).read_text())
    figures = [figure for figure in run["figures"] if figure["ratio"] == figure["ratio"]]  # drop NaN
    labels = [f"{figure['group']}: {figure['metric']}"[:70] for figure in figures]
    colours = [
        "grey" if figure["goal_met"] is None else ("tab:green" if figure["goal_met"] else "tab:red")
        for figure in figures
    ]
    height = 0.45 * len(figures) + 1.5
    chart, axes = plt.subplots(figsize=(11, height))
    positions = range(len(figures))
    axes.barh(positions, [figure["ratio"] for figure in figures], color=colours)
    for position, figure in zip(positions, figures, strict=True):
        if figure["goal"] and figure["goal"][0] == "ratio":
            axes.plot([figure["goal"][2]] * 2, [position - 0.4, position + 0.4], color="black", linewidth=2)
    axes.set_yticks(list(positions), labels, fontsize=8)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.axvline(1.0, color="grey", linestyle=":")
    axes.set_xlabel("ours / reference (log scale); black bars: ratio goals; green met, red missed, grey info")
    machine = run["machine"]
    axes.set_title(f"tfdock bench {run['measured_at']}: {machine['cores']} cores, Docker {machine['engine']}")
    chart.tight_layout()
    destination = Path(sys.argv[1]).parent / "summary.png"
    with atomic_path(destination) as temporary:
        chart.savefig(temporary, format="png", dpi=110)


if __name__ == "__main__":
    main()

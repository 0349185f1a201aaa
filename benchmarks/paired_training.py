"""Paired throughput runs for the rows that hold the container against a native run: the same training
(fixed epochs, seed, data), natively in the host venv with the image's lock (edit_test_loop's) and through
`invoke train`, images/s of each run's last epoch from its metrics.json.

The pairs run in ABBA order (container, native, native, container, ...): on a machine whose speed drifts,
or where the second of two back-to-back runs is the slow one, each side is first as often as second.
Longer runs do not narrow the pairs' spread: measuring two epochs of 20,000 images (6-7 s) in place of one of
12,000 (2.4 s) left the stdev of the pairs' ratios at 0.05 (2026-12-07). The noise is from run to run, so
only more pairs would narrow it, at about 11 s each.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from edit_test_loop import native_python  # noqa: E402  (the same host venv)

from tfdock_host.bench import Figure, publish, spread, timed  # noqa: E402
from tfdock_host.settings import load  # noqa: E402

EPOCHS = 2  # images/s are read from the last


def trainer_args(limit_train: int) -> list[str]:
    """The trainer's flags both sides get: a fixed subset, epochs and seed."""
    return ["--epochs", str(EPOCHS), "--limit-train", str(limit_train), "--limit-test", "1000", "--seed", "0"]


def images_per_second(output_dir: Path, run_name: str) -> float:
    """Of the run's last epoch: the first one also traces the train step, which is start-up, not speed."""
    history = json.loads((output_dir / run_name / "metrics.json").read_text())["history"]
    return float(history[-1]["images_per_second"])


def native_run(
    output_dir: Path, run_name: str, data_dir: str, trainer: list[str], prefix: list[str]
) -> float:
    """The trainer in the host venv (after `prefix`, e.g. taskset); its images/s."""
    command = [*prefix, str(native_python()), "-m", "tfdock.train", "--data-dir", data_dir]
    command += ["--output-dir", str(output_dir), *trainer, "--run-name", run_name]
    timed(command, env={"PYTHONPATH": str(ROOT / "src")})
    return images_per_second(output_dir, run_name)


def container_run(
    output_dir: Path, run_name: str, data_dir: str, trainer: list[str], options: list[str]
) -> float:
    """`invoke train` with the task `options` (e.g. --gpus none --cpus 1); its images/s."""
    command = [sys.executable, "-m", "invoke", "train", "--data-dir", data_dir, *options]
    timed([*command, "--output-dir", str(output_dir), "--", *trainer, "--run-name", run_name])
    return images_per_second(output_dir, run_name)


def abba(
    pairs: int, container: Callable[[str], float], native: Callable[[str], float]
) -> tuple[list[float], list[float]]:
    """`pairs` runs of each, container first in even pairs and native first in odd ones; each callable
    takes a run name and returns its images/s."""
    ours: list[float] = []
    reference: list[float] = []
    for pair in range(pairs):
        sides = [(container, ours, "container"), (native, reference, "native")]
        for side, samples, label in sides if pair % 2 == 0 else reversed(sides):
            samples.append(side(f"pair{pair}-{label}"))
        print(
            f"pair {pair}: container {ours[-1]:.0f} images/s, native {reference[-1]:.0f} images/s", flush=True
        )
    return ours, reference


def pair_ratios(ours: list[float], reference: list[float]) -> str:
    """The spread of the pairs' own ratios (container / native): what one pair could have claimed."""
    ratios = [mine / theirs for mine, theirs in zip(ours, reference, strict=True)]
    return f"per-pair ratio {spread(ratios)}, stdev {statistics.stdev(ratios):.3f}" if len(ratios) > 1 else ""


def main(
    name: str,
    doc: str,
    *,
    group: str,
    metric: str,
    reference_name: str,
    goal_ratio: float,
    options: list[str],
    prefix: list[str],
    limit_train: int,
) -> int:
    """A benchmark script's whole run: its pairs (`invoke train --gpus none OPTIONS` against the native
    trainer after PREFIX) into its figure in benchmarks/results/<name>.json; its exit code."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=6, help="runs of each side (default: 6)")
    parser.add_argument("--quick", action="store_const", dest="pairs", const=4, help="4 pairs")
    parser.add_argument("--limit-train", type=int, default=limit_train, help="training images per epoch")
    args = parser.parse_args()

    data_dir = load().fashion_mnist_dir
    trainer = trainer_args(args.limit_train)
    runs = ROOT / ".bench" / name
    shutil.rmtree(runs, ignore_errors=True)
    load_before = os.getloadavg()[0]
    container, native = abba(
        args.pairs,
        functools.partial(
            container_run,
            runs / "container",
            data_dir=data_dir,
            trainer=trainer,
            options=["--gpus", "none", *options],
        ),
        functools.partial(native_run, runs / "native", data_dir=data_dir, trainer=trainer, prefix=prefix),
    )
    figure = Figure(
        group,
        metric,
        "images/s",
        container,
        native,
        reference_name,
        ("ratio", ">=", goal_ratio),
        f"images/s of epoch {EPOCHS} of {EPOCHS} ({args.limit_train} Fashion-MNIST images each), seed 0, "
        f"CPU; {args.pairs} pairs in ABBA order, {pair_ratios(container, native)}; load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores (under load, "
        "the engine's cgroup may weigh as one task against each native thread)",
    )
    print(f"{name}: container / native images/s {figure.ratio:.3f} (goal >= {goal_ratio})")
    return publish(name, [figure])

"""Training throughput of `invoke train --workers 2` against one worker: the multi-worker scaling efficiency.

Both runs train the same real Fashion-MNIST subset for the same epochs with the same per-replica batch, so
each worker does the same work per step (weak scaling). Images/s come from each run's metrics.json, from
its last epoch (the first one includes tracing the train step). Efficiency = 2-worker images/s divided by
twice the 1-worker images/s: 1.0 would be perfect scaling.

Runs on the host like a user would (`invoke train`), on CPU. With both workers sharing one host's cores
the figure is informative only; the target (>= 0.9 per added GPU) is for workers that each have a GPU.

Usage: python benchmarks/workers_throughput.py [--data-dir DIR] [--limit-train N] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tfdock_host import settings

ROOT = settings.ROOT

EFFICIENCY_TARGET_PER_GPU = 0.9


def train(workers: int, options: argparse.Namespace, output_dir: Path) -> dict[str, Any]:
    """One `invoke train --workers N` run; returns its metrics.json."""
    command = [sys.executable, "-m", "invoke", "train", "--workers", str(workers), "--gpus", "none"]
    command += ["--epochs", str(options.epochs), "--batch-size", str(options.batch_size)]
    command += ["--data-dir", str(options.data_dir), "--output-dir", str(output_dir)]
    command += ["--", "--limit-train", str(options.limit_train), "--limit-test", "500"]
    print(f"{workers} worker(s): {' '.join(command[2:])}", flush=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
    (run_dir,) = [path for path in output_dir.iterdir() if path.is_dir() and not path.is_symlink()]
    return json.loads((run_dir / "metrics.json").read_text())


def summary(metrics: dict[str, Any]) -> dict[str, Any]:
    last_epoch = metrics["history"][-1]
    return {
        "images_per_second": round(last_epoch["images_per_second"], 1),
        "replicas": metrics["replicas"],
        "global_batch_size": metrics["global_batch_size"],
        "strategy": metrics["strategy"],
        "test_accuracy": round(metrics["test_accuracy"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(settings.load().fashion_mnist_dir))
    parser.add_argument("--limit-train", type=int, default=3000, help="training images (before validation)")
    parser.add_argument("--epochs", type=int, default=2, help="the last one is measured")
    parser.add_argument("--batch-size", type=int, default=64, help="per replica")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tfdock-workers-bench-") as scratch:
        one, two = (summary(train(workers, options, Path(scratch) / f"w{workers}")) for workers in (1, 2))
    efficiency = two["images_per_second"] / (2 * one["images_per_second"])
    result = {
        "one_worker": one,
        "two_workers": two,
        "scaling_efficiency": round(efficiency, 3),
        "target_per_added_gpu": EFFICIENCY_TARGET_PER_GPU,
        "machine": {
            "cpu_cores": os.cpu_count(),
            "load_average_1m_after": round(os.getloadavg()[0], 2),
            "platform": platform.platform(),
        },
        "settings": {key: str(value) for key, value in vars(options).items() if key != "results_dir"},
        "note": (
            "Both workers share this machine's CPU cores, so two workers cannot be faster than one here: "
            "informative only (it shows the gradient exchange's cost). The target applies to workers with a "
            "GPU each."
        ),
    }
    options.results_dir.mkdir(parents=True, exist_ok=True)
    (options.results_dir / "workers_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"1 worker:  {one['images_per_second']:.1f} images/s")
    print(f"2 workers: {two['images_per_second']:.1f} images/s")
    print(f"scaling efficiency: {efficiency:.2f} (target >= {EFFICIENCY_TARGET_PER_GPU} per added GPU)")
    print(f"machine: {os.cpu_count()} CPU cores; {result['note']}")


if __name__ == "__main__":
    main()

"""Container overhead: the same training (fixed epochs, seed, data) natively in a host venv with the same
pinned TensorFlow, and through `invoke train` in the container; images/s of each run's last epoch, from
its metrics.json.

    python benchmarks/container_overhead.py [--quick] [--repeat 5]

Runs alternate native/container so that drift in the machine's load hits both alike.
Writes benchmarks/results/container_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from edit_test_loop import native_python  # noqa: E402  (the same host venv)

from tfdock_host.bench import Figure, publish, timed  # noqa: E402
from tfdock_host.settings import load  # noqa: E402

RUNS = ROOT / ".bench" / "overhead"
GOAL_RATIO = 0.98
EPOCHS = 2  # images/s are read from the last


def images_per_second(output_dir: Path, run_name: str) -> float:
    """Of the run's last epoch: the first one also traces the train step, which is start-up, not speed."""
    history = json.loads((output_dir / run_name / "metrics.json").read_text())["history"]
    return float(history[-1]["images_per_second"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_const", dest="repeat", const=3, help="3 runs each")
    parser.add_argument("--limit-train", type=int, default=12000, help="training images per epoch")
    args = parser.parse_args()

    data_dir = load().fashion_mnist_dir
    trainer = ["--epochs", str(EPOCHS), "--limit-train", str(args.limit_train), "--limit-test", "1000"]
    trainer += ["--seed", "0"]
    shutil.rmtree(RUNS, ignore_errors=True)
    python = native_python()
    native, container = [], []
    for attempt in range(args.repeat):
        name = f"run{attempt}"
        native_dir, container_dir = RUNS / "native", RUNS / "container"
        native_train = [str(python), "-m", "tfdock.train", "--data-dir", data_dir]
        timed(
            [*native_train, "--output-dir", str(native_dir), *trainer, "--run-name", name],
            env={"PYTHONPATH": str(ROOT / "src")},
        )
        native.append(images_per_second(native_dir, name))
        invoke_train = [sys.executable, "-m", "invoke", "train", "--gpus", "none", "--data-dir", data_dir]
        timed([*invoke_train, "--output-dir", str(container_dir), "--", *trainer, "--run-name", name])
        container.append(images_per_second(container_dir, name))
        print(f"run {attempt}: native {native[-1]:.0f} images/s, container {container[-1]:.0f} images/s")

    figure = Figure(
        "container overhead",
        "training throughput, same run natively and in the container",
        "images/s",
        container,
        native,
        "native host venv, same lock",
        ("ratio", ">=", GOAL_RATIO),
        f"images/s of epoch {EPOCHS} of {EPOCHS} ({args.limit_train} Fashion-MNIST images each), seed 0, CPU",
    )
    print(f"container / native images/s: {figure.ratio:.3f} (goal >= {GOAL_RATIO})")
    return publish("container_overhead", [figure])


if __name__ == "__main__":
    sys.exit(main())

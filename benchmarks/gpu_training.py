"""GPU throughput: the default training's images/s on the GPUs asked for (`invoke bench --gpus all`),
against the same run on the CPU; images/s of each run's last epoch. Refuses when TensorFlow in the
container saw no GPU (e.g. under CI's stand-in hook), rather than report a CPU figure as a GPU one.

    python benchmarks/gpu_training.py --gpus all [--quick]

Writes benchmarks/results/gpu_training.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys

from paired_training import EPOCHS, ROOT, container_run

from tfdock_host.bench import Figure, publish
from tfdock_host.settings import load

RUNS = ROOT / ".bench" / "gpu_training"
TRAIN_IMAGES = 60000  # Fashion-MNIST's whole training set


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", required=True, help="as in `docker run --gpus`, e.g. all")
    parser.add_argument(
        "--quick", action="store_const", dest="limit_train", const=12000, default=TRAIN_IMAGES,
        help="12000 training images per epoch, not all",
    )  # fmt: skip
    args = parser.parse_args()

    data_dir = load().fashion_mnist_dir
    trainer = ["--epochs", str(EPOCHS), "--limit-train", str(args.limit_train), "--seed", "0"]
    shutil.rmtree(RUNS, ignore_errors=True)
    ours = container_run(RUNS, "gpus", data_dir, trainer, ["--gpus", args.gpus])
    seen = json.loads((RUNS / "gpus" / "metrics.json").read_text())
    if not seen["gpus"]:
        print(f"gpu_training: TensorFlow in the container saw no GPU of --gpus {args.gpus} (devices: "
              f"{', '.join(seen['devices'])}); no GPU figure to report", file=sys.stderr)  # fmt: skip
        return 1
    cpu = container_run(RUNS, "cpu", data_dir, trainer, ["--gpus", "none"])
    figure = Figure(
        "gpu",
        f"training throughput of the default recipe, --gpus {args.gpus}",
        "images/s",
        [ours],
        [cpu],
        "the same run on the CPU",
        None,
        f"images/s of epoch {EPOCHS} of {EPOCHS} ({args.limit_train} Fashion-MNIST images each); "
        f"GPUs: {', '.join(seen['gpus'])}; precision {seen['precision']}, {seen['replicas']} replica(s)",
    )
    print(f"--gpus {args.gpus}: {ours:.0f} images/s, CPU {cpu:.0f} images/s")
    return publish("gpu_training", [figure])


if __name__ == "__main__":
    sys.exit(main())

"""Several training steps per call into TensorFlow (`--steps-per-call N`) against one step per call (today's
loop), in the same run on real Fashion-MNIST with the default model: images/s of the train step alone.

    python benchmarks/steps_per_call.py [--quick] [--data-dir DIR] [--steps-per-call N]

A small CNN is launch-bound on a GPU: one Python round trip per step costs as much as the step. On a CPU
the gain is smaller; the GPU figure is left to the first GPU host. Rounds alternate one step and N steps
per call, so that a machine whose speed drifts (shared cores) shifts both alike; the median round counts.
Writes benchmarks/results/steps_per_call.json (runs in the image: it needs TensorFlow).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from tfdock import data, pipeline, runtime
from tfdock import model as cnn
from tfdock.config import TrainConfig
from tfdock.files import write_text_atomically
from tfdock.optimizer import make_optimizer
from tfdock.trainer import Trainer

RESULTS = Path(__file__).resolve().parent / "results"
GOAL_RATIO = 1.0  # several steps per call must never be slower than one
MEASURED_STEPS = 96  # a multiple of every N this is run with, so each round runs the same steps


def images_per_second(trainer: Trainer, batches: Any, steps_per_call: int, batch_size: int) -> float:
    """Runs MEASURED_STEPS steps (after one untimed call that traces) and returns images/s."""
    iterator = iter(batches)
    trainer.train_steps(iterator, steps_per_call)  # traces the loop: not the steady state
    started = time.perf_counter()
    for _ in range(MEASURED_STEPS // steps_per_call):
        trainer.train_steps(iterator, steps_per_call)
    trainer.take_train_metrics()  # waits for the last step: a call returns before its ops finish
    return MEASURED_STEPS * batch_size / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = os.environ.get("TFDOCK_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
    parser.add_argument("--data-dir", type=Path, default=Path(default_dir))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_const", dest="rounds", const=3, help="3 rounds")
    parser.add_argument("--steps-per-call", type=int, default=16)
    args = parser.parse_args()

    config = TrainConfig(data_dir=str(args.data_dir))
    env = runtime.setup(config)
    splits = data.load(args.data_dir, "fashion-mnist")
    epochs = pipeline.training_batches(splits.train_images, splits.train_labels, env.global_batch_size, 0)
    steps_per_epoch = len(splits.train_images) // env.global_batch_size
    with env.strategy.scope():
        trainer = Trainer(cnn.build(config), make_optimizer(config, env, steps_per_epoch), env)

    one: list[float] = []
    several: list[float] = []
    for round_ in range(args.rounds):
        for steps_per_call, figures in ((1, one), (args.steps_per_call, several)):
            figures.append(
                images_per_second(
                    trainer, trainer.distribute(epochs(round_)), steps_per_call, env.global_batch_size
                )
            )
        print(f"round {round_}: 1 step/call {one[-1]:.0f} images/s, {args.steps_per_call} {several[-1]:.0f}")

    figure = {
        "group": "train step",
        "metric": f"images/s of the train step, {args.steps_per_call} steps per call ({env.devices[0]})",
        "unit": "images/s",
        "ours": several,
        "reference": one,
        "reference_name": "one step per call (the default loop)",
        "goal": ["ratio", ">=", GOAL_RATIO],
        "note": "same weights either way; expected to gain more on a GPU, where a step is launch-bound "
        "(not measured here)",
    }
    RESULTS.mkdir(exist_ok=True)
    write_text_atomically(RESULTS / "steps_per_call.json", json.dumps([figure], indent=2) + "\n")
    ratio = statistics.median(several) / statistics.median(one)
    print(f"{args.steps_per_call} steps per call / 1: {ratio:.2f}x images/s (goal >= {GOAL_RATIO:g})")
    return 0 if ratio >= GOAL_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())

"""What the in-container benchmarks of the train step share: their command line, the default model's setup
on real Fashion-MNIST, timing a number of steps, and writing their figures with the verdict as exit code.

Imported by benchmarks/{steps_per_call,input_pipeline,whole_step_xla,loop_vs_fit}.py (a script's own
directory is on sys.path); they run in the image, as they need TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tensorflow as tf

from tfdock import data, pipeline, runtime
from tfdock import model as cnn
from tfdock.config import Augmentation, TrainConfig
from tfdock.files import write_text_atomically
from tfdock.optimizer import make_optimizer
from tfdock.trainer import Trainer

RESULTS = Path(__file__).resolve().parent / "results"


def parser(description: str, rounds: int, quick_rounds: int) -> argparse.ArgumentParser:
    """--data-dir, --rounds and --quick (fewer rounds); a script adds its own options."""
    parser = argparse.ArgumentParser(description=description)
    default_dir = os.environ.get("TFDOCK_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
    parser.add_argument("--data-dir", type=Path, default=Path(default_dir))
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument(
        "--quick", action="store_const", dest="rounds", const=quick_rounds, help=f"{quick_rounds} rounds"
    )
    return parser


@dataclasses.dataclass
class Setup:
    """The default recipe's runtime and data (TrainConfig defaults, except `changes`)."""

    config: TrainConfig
    env: runtime.Runtime
    epochs: Callable[[int], tf.data.Dataset]  # epoch -> its batches, as the trainer's pipeline makes them
    steps_per_epoch: int

    def trainer(self, env: runtime.Runtime | None = None) -> Trainer:
        """A Trainer of a freshly built default model (`env`: another Runtime of the same process)."""
        env = env or self.env
        with env.strategy.scope():
            return Trainer(
                cnn.build(self.config), make_optimizer(self.config, env, self.steps_per_epoch), env
            )


def setup(data_dir: Path, mirrored: bool = False, **changes: Any) -> Setup:
    """`mirrored`: the recipe's mirroring from the first epoch on (the pipeline's heavier path)."""
    config = TrainConfig(data_dir=str(data_dir), **changes)
    env = runtime.setup(config)
    splits = data.load(data_dir, config.dataset)
    augmentation = Augmentation(flip_from_epoch=0 if mirrored and config.flips_images else None)
    epochs = pipeline.training_batches(
        splits.train_images, splits.train_labels, env.global_batch_size, config.seed, augmentation
    )
    return Setup(config, env, epochs, len(splits.train_images) // env.global_batch_size)


def images_per_second(
    trainer: Trainer, batches: Any, steps_per_call: int, steps: int, batch_size: int
) -> float:
    """Runs `steps` steps (after one untimed call that traces) and returns images/s."""
    iterator = iter(batches)
    trainer.train_steps(iterator, steps_per_call)  # traces the loop: not the steady state
    started = time.perf_counter()
    for _ in range(steps // steps_per_call):
        trainer.train_steps(iterator, steps_per_call)
    trainer.take_train_metrics()  # waits for the last step: a call may return before its ops finish
    return steps * batch_size / (time.perf_counter() - started)


def publish(name: str, figures: list[dict[str, Any]]) -> int:
    """Writes results/<name>.json (the figures `invoke bench` reports), prints each ratio; 1 when a figure
    missed its goal (("ratio", ">=" or "<=", x) on median(ours) / median(reference); None: informative)."""
    RESULTS.mkdir(exist_ok=True)
    write_text_atomically(RESULTS / f"{name}.json", json.dumps(figures, indent=2) + "\n")
    missed = 0
    for figure in figures:
        ratio = statistics.median(figure["ours"]) / statistics.median(figure["reference"])
        goal = figure.get("goal")
        met = goal is None or (ratio >= goal[2] if goal[1] == ">=" else ratio <= goal[2])
        verdict = (
            "informative" if goal is None else f"goal {goal[1]} {goal[2]:g}: {'met' if met else 'MISSED'}"
        )
        print(f"{figure['metric']}: {ratio:.2f}x {figure['reference_name']} ({verdict})")
        missed += not met
    return 1 if missed else 0

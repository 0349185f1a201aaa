"""Test accuracy against training seconds: the loop that benchmarks/{recipe_search,time_to_accuracy}.py share.

It trains a tfdock.trainer.Trainer as tfdock.train does (calls of steps_per_call steps on an epoch's
batches), stops at evaluation points to score the model being trained on the test set, keeps training
seconds with evaluation excluded, and scores the model as exported after the last epoch. Imported by those
scripts (a script's own directory is on sys.path); nothing here imports TensorFlow, so the host tests read
the evaluation schedule without it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tfdock.trainer import Trainer

TARGET_ACCURACY = 0.90
EVALS_PER_EPOCH = 4

Point = dict[str, float]  # {"seconds", "epoch", "accuracy"}: as the results' curves hold them


@dataclasses.dataclass
class Curve:
    points: list[Point] = dataclasses.field(default_factory=list)  # the model being trained
    # Each trained epoch: {"epoch", "accuracy"}, and "exported" where the model as exported was scored.
    epochs: list[dict[str, float]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0  # training only: evaluation excluded
    steps: int = 0

    def first_at(self, accuracy: float = TARGET_ACCURACY) -> Point | None:
        return next((point for point in self.points if point["accuracy"] >= accuracy), None)


def evaluation_steps(steps_per_epoch: int, epochs: int, frequent_epochs: int) -> list[list[int]]:
    """Each epoch's evaluation points, as global step counts: EVALS_PER_EPOCH evenly spaced over each of the
    first `frequent_epochs` epochs (where time to 90% is decided), the last at its end; every later epoch's
    end. Spaced within the epoch, not by global step, so that none falls a step short of an epoch's end."""
    schedule = []
    for epoch in range(epochs):
        start, end = epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch
        parts = range(1, EVALS_PER_EPOCH) if epoch < frequent_epochs else []
        within = sorted({start + round(part * steps_per_epoch / EVALS_PER_EPOCH) for part in parts})
        schedule.append([*(step for step in within if start < step < end), end])
    return schedule


def exported_accuracy(model: Any, config: Any, images: Any, labels: Any) -> Callable[[], float]:
    """Scores `model` (a Keras model, trained with TrainConfig `config`) as tfdock exports it, on these
    test images."""

    def score() -> float:
        # Imported here: the host tests import this module without TensorFlow.
        from tfdock.evaluate import evaluate
        from tfdock.export import Exported

        return float(evaluate(Exported(model, config).predict, images, labels)["accuracy"])

    return score


def train(
    name: str,
    trainer: Trainer,
    batches_for_epoch: Callable[[int], Any],
    test: Any,
    steps_per_epoch: int,
    epochs: int,
    *,
    frequent_epochs: int,
    steps_per_call: int = 1,
    exported_accuracy: Callable[[], float] | None = None,
    exported_every_epoch: bool = False,
    stop_at_target: bool = False,
) -> Curve:
    """Train `epochs` epochs, the first `frequent_epochs` of them evaluated EVALS_PER_EPOCH times, or with
    `stop_at_target` until the end of the epoch in which the target is first reached. The model as exported
    is scored (`exported_accuracy`; without it, the model as trained) after the last epoch, and with
    `exported_every_epoch` after each one. Prints a line for each evaluation point, starting with `name`."""
    score_exported = exported_accuracy or (lambda: trainer.evaluate(test)[1])
    curve = Curve()
    for epoch, stops in enumerate(evaluation_steps(steps_per_epoch, epochs, frequent_epochs)):
        batches = iter(trainer.distribute(batches_for_epoch(epoch)))
        for stop in stops:
            started = time.perf_counter()
            while curve.steps < stop:
                count = min(steps_per_call, stop - curve.steps)
                trainer.train_steps(batches, count)
                curve.steps += count
            trainer.take_train_metrics()  # waits for the steps: the clock stops after them
            curve.seconds += time.perf_counter() - started
            accuracy = trainer.evaluate(test)[1]
            trained = stop / steps_per_epoch  # epochs
            curve.points.append({"seconds": curve.seconds, "epoch": trained, "accuracy": accuracy})
            line = f"{name:>8}: {curve.seconds:7.1f} s  epoch {trained:5.2f}  test accuracy {accuracy:.4f}"
            if stop == stops[-1]:
                scored = {"epoch": epoch + 1, "accuracy": accuracy}
                if exported_every_epoch or epoch + 1 == epochs:
                    scored["exported"] = score_exported()
                    line += f"  exported {scored['exported']:.4f}"
                curve.epochs.append(scored)
            print(line, flush=True)
        if stop_at_target and curve.first_at():
            break
    return curve

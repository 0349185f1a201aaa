"""tfdock's custom training loop against Keras `fit` on the SAME model (the default CNN, freshly built for
each), the same batches of real Fashion-MNIST, the same loss (label smoothing included) and optimizer, in
the same process: images/s of training. Goal: the loop at least as fast as fit (>= 1.0x).

    python benchmarks/loop_vs_fit.py [--quick] [--data-dir DIR]

Both are timed the same way: the steady state of MEASURED_STEPS steps, from two fresh passes over an
epoch's batches (see steady_images_per_second), after one untimed step of each that traces. Rounds run the
two in ABBA order (loop, fit, fit, loop, ...), so a machine whose speed drifts between the first and the
second of a pair shifts both alike; the median round counts.
Writes benchmarks/results/loop_vs_fit.json (runs in the image: it needs TensorFlow).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf
import train_step_bench as bench

from tfdock import model as cnn
from tfdock.data import NUM_CLASSES
from tfdock.optimizer import make_optimizer
from tfdock.trainer import Trainer

GOAL_RATIO = 1.0
SHORT_STEPS = 8
MEASURED_STEPS = 96


def _seconds(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def steady_images_per_second(train: Callable[[int], object], batch_size: int) -> tuple[float, float]:
    """(images/s of MEASURED_STEPS steps, seconds a pass pays once): `train(n)` makes a fresh pass of n
    steps; a pass of SHORT + MEASURED steps less one of SHORT steps cancels what every pass pays once (a
    fresh iterator and its shuffle buffer; Keras's per-fit setup), which a whole epoch pays once too."""
    short = _seconds(lambda: train(SHORT_STEPS))
    long = _seconds(lambda: train(SHORT_STEPS + MEASURED_STEPS))
    per_step = (long - short) / MEASURED_STEPS
    return batch_size / per_step, short - SHORT_STEPS * per_step


def loop_pass(trainer: Trainer, batches: tf.data.Dataset, steps: int) -> None:
    iterator = iter(trainer.distribute(batches))
    for _ in range(steps):
        trainer.train_steps(iterator, 1)
    trainer.take_train_metrics()  # waits for the last step


def fit_pass(model: keras.Model, batches: tf.data.Dataset, steps: int) -> None:
    model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)  # returns once its steps are done


def compiled_for_fit(run: bench.Setup) -> keras.Model:
    """The default model compiled for fit with the trainer's loss (label smoothing on one-hot targets), its
    optimizer and an accuracy metric; no XLA, one step per execution, like the loop."""
    smoothing = run.config.label_smoothing

    def loss(labels: Any, probabilities: Any) -> Any:
        one_hot = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), NUM_CLASSES)
        return keras.losses.categorical_crossentropy(one_hot, probabilities, label_smoothing=smoothing)

    model = cnn.build(run.config)
    model.compile(
        optimizer=make_optimizer(run.config, run.env, run.steps_per_epoch),
        loss=loss,
        metrics=["accuracy"],
        jit_compile=False,
        steps_per_execution=1,
    )
    return model


def main() -> int:
    args = bench.parser(__doc__.splitlines()[0], rounds=6, quick_rounds=4).parse_args()
    run = bench.setup(args.data_dir)
    trainer = run.trainer()
    fitted = compiled_for_fit(run)
    batch = run.env.global_batch_size
    loop_pass(trainer, run.epochs(0), 1)  # traces both: not the steady state
    fit_pass(fitted, run.epochs(0), 1)
    measure = {
        "loop": lambda epoch: steady_images_per_second(
            lambda n: loop_pass(trainer, run.epochs(epoch), n), batch
        ),
        "fit": lambda epoch: steady_images_per_second(
            lambda n: fit_pass(fitted, run.epochs(epoch), n), batch
        ),
    }
    figures: dict[str, list[float]] = {"loop": [], "fit": []}
    for round_ in range(args.rounds):
        order = ("loop", "fit") if round_ % 2 == 0 else ("fit", "loop")  # ABBA
        once = {}
        for name in order:
            images_per_second, once[name] = measure[name](round_)
            figures[name].append(images_per_second)
        print(
            f"round {round_}: loop {figures['loop'][-1]:.0f} images/s, fit {figures['fit'][-1]:.0f} "
            f"(once per pass: loop {once['loop']:.2f} s, fit {once['fit']:.2f} s)"
        )

    figure = {
        "group": "train step",
        "metric": f"images/s of training, the custom loop ({run.env.devices[0]})",
        "unit": "images/s",
        "ours": figures["loop"],
        "reference": figures["fit"],
        "reference_name": "Keras fit on the same model, data, loss and optimizer",
        "goal": ["ratio", ">=", GOAL_RATIO],
        "note": "one process, ABBA order; both deterministic, no XLA, one step per call",
    }
    return bench.publish("loop_vs_fit", [figure])


if __name__ == "__main__":
    sys.exit(main())

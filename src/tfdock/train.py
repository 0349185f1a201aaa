"""Train the CNN: one custom loop for every device setup (default, MirroredStrategy, MultiWorkerMirrored).

This module is the run: epochs, the checkpoint after each, metrics.json, TensorBoard, the profiler, the
export. What a step does is the Trainer's (trainer.py); run dirs and --resume are runs.py's.

Usage: python -m tfdock.train [--dataset fashion-mnist] [--epochs N] [--resume [RUN_DIR]] ... (see --help)

A run lives in <output-dir>/<run-name>/ with config.json, checkpoints/, tensorboard/, metrics.json (rewritten
after every epoch) and, at the end, model.keras and saved_model/. <output-dir>/latest points at the
newest run.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfdock import cli, data, export, pipeline, runs, runtime
from tfdock import model as cnn
from tfdock.config import TrainConfig, parse_args
from tfdock.errors import ConfigError
from tfdock.evaluate import evaluate
from tfdock.files import write_text_atomically
from tfdock.optimizer import learning_rate_schedule, optimizer_for, rate_at, replica_warmup_steps
from tfdock.progress_line import ProgressLine, live_from_environment
from tfdock.trainer import Trainer

EVAL_BATCH_SIZE = 1000

Arrays = tuple[np.ndarray, np.ndarray]  # (uint8 images N x 28 x 28, uint8 labels N)


def load_arrays(config: TrainConfig) -> tuple[Arrays, Arrays, Arrays]:
    """(train, validation, test) arrays, limited as asked; validation is carved out of the training set."""
    data_dir = Path(config.data_dir)
    if config.download:
        data.download(config.dataset, data_dir)
    splits = data.load(data_dir, config.dataset)
    train, validation = data.split_validation(
        splits.train_images[: config.limit_train],
        splits.train_labels[: config.limit_train],
        config.validation_split,
        config.seed,
    )
    return (
        train,
        validation,
        (splits.test_images[: config.limit_test], splits.test_labels[: config.limit_test]),
    )


def train(config: TrainConfig) -> dict[str, Any]:
    """Run (or resume) a training run and return its final metrics."""
    started = time.perf_counter()
    console = ProgressLine(live_from_environment())
    resume_dir = runs.resolve_resume(config) if config.resume else None
    if resume_dir:
        config = config.resumed(TrainConfig.from_json_file(resume_dir / "config.json"), resume_dir)
    env = runtime.setup(config)
    (train_images, train_labels), validation, test = load_arrays(config)
    run_dir = resume_dir if resume_dir and env.is_chief else runs.prepare(config, env.is_chief)

    batches_for_epoch = pipeline.training_batches(
        train_images,
        train_labels,
        env.global_batch_size,
        config.seed,
        config.augmentation,
    )
    steps_per_epoch = len(train_images) // env.global_batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"{len(train_images)} training images make no full batch of {env.global_batch_size}",
            "lower --batch-size or raise --limit-train",
        )
    print(env.summary(replica_warmup_steps(config, steps_per_epoch, env.replicas)), flush=True)
    with env.strategy.scope():
        model = cnn.build(config)
        schedule = learning_rate_schedule(config, env.learning_rate, steps_per_epoch, env.replicas)
        optimizer = optimizer_for(schedule, env)
        epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
    trainer = Trainer(model, optimizer, env, config.label_smoothing)
    # The data order is a function of (seed, epoch); with dropout's RNG state these objects are everything
    # --resume needs to continue exactly. (Keras does not checkpoint the seed generators on its own.)
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, epochs_done=epochs_done, dropout_rng=cnn.rng_states(model)
    )
    manager = tf.train.CheckpointManager(checkpoint, run_dir / "checkpoints", max_to_keep=None)
    progress = runs.Progress()
    if resume_dir:
        # Every worker restores the chief's checkpoint (the `checkpoint` index names only complete ones).
        restore_from = tf.train.latest_checkpoint(str(resume_dir / "checkpoints"))
        if restore_from:
            checkpoint.restore(restore_from).assert_existing_objects_matched()
            print(f"resumed {resume_dir.name} from {Path(restore_from).name}", flush=True)
        progress = runs.Progress.load(resume_dir / "metrics.json", int(epochs_done.numpy()))

    validation_batches = pipeline.evaluation_batches(*validation, EVAL_BATCH_SIZE)
    with runs.writing(run_dir):
        writer = tf.summary.create_file_writer(str(run_dir / "tensorboard"))
    profiler = Profiler(config.profile, run_dir / "tensorboard")

    def record(status: str, **final: float) -> dict[str, Any]:
        images_trained = len(progress.history) * steps_per_epoch * env.global_batch_size
        metrics = {
            "status": status,
            **final,
            "epochs_completed": len(progress.history),
            "wall_seconds": progress.wall_seconds + time.perf_counter() - started,
            "training_seconds": progress.training_seconds,
            "images_per_second": images_trained / max(progress.training_seconds, 1e-9),
            "tensorflow_version": tf.__version__,
            "devices": list(env.devices),
            "gpus": list(env.gpus),
            "strategy": env.strategy_name,
            "collectives": env.collectives,
            "precision": env.precision,
            "replicas": env.replicas,
            "global_batch_size": env.global_batch_size,
            "config": config.as_dict(),
            "history": progress.history,
        }
        with runs.writing(run_dir):
            write_text_atomically(run_dir / "metrics.json", json.dumps(metrics, indent=2))
        return metrics

    # The live line's loss sums the replicas: a collective under MultiWorkerMirrored, which the workers would
    # not call alike on a timer.
    multi_worker = isinstance(env.strategy, tf.distribute.MultiWorkerMirroredStrategy)
    live_loss = None if multi_worker else lambda: trainer.peek_train_metrics()[0]
    with cli.stop_signals.deferred():
        for epoch in range(int(epochs_done.numpy()), config.epochs):
            epoch_started = time.perf_counter()
            # The global step, counted here: reading optimizer.iterations back would wait for every step.
            step = epoch * steps_per_epoch
            end = step + steps_per_epoch
            batches = iter(trainer.distribute(batches_for_epoch(epoch)))
            console.start_epoch(epoch + 1, config.epochs, steps_per_epoch, env.global_batch_size)
            while step < end:
                steps = min(config.steps_per_call, end - step)
                profiler.before_steps(step, steps)
                with profiler.step_marker(step):
                    trainer.train_steps(batches, steps)
                if config.step_delay:  # tests only: work that outlasts a chosen moment on any machine
                    time.sleep(config.step_delay * steps)
                step += steps
                console.update(steps_per_epoch - (end - step), live_loss)
                cli.stop_signals.raise_if_pending()
            training_seconds = time.perf_counter() - epoch_started
            loss, accuracy = trainer.take_train_metrics()
            scalars = {
                "loss": loss,
                "accuracy": accuracy,
                "learning_rate": rate_at(schedule, end - 1),  # the epoch's last step's
                "images_per_second": steps_per_epoch * env.global_batch_size / training_seconds,
                "training_seconds": training_seconds,
            }
            if trainer.loss_scale:
                scalars["loss_scale"] = float(trainer.loss_scale.dynamic_scale.numpy())
            if len(validation[0]):
                scalars["val_loss"], scalars["val_accuracy"] = trainer.evaluate(validation_batches)
            epochs_done.assign(epoch + 1)
            progress.history.append({"epoch": epoch + 1, **scalars})
            # metrics.json before the checkpoint: a run killed between the two resumes from the checkpoint
            # before and redoes this epoch (Progress.load drops its entry); the other order lost the epoch.
            record("running")
            with runs.writing(run_dir):
                with writer.as_default(step=epoch + 1):
                    for name, value in scalars.items():
                        tf.summary.scalar(name, value)
                writer.flush()
                manager.save(checkpoint_number=epoch + 1)
            console.print(
                f"epoch {epoch + 1}/{config.epochs} "
                + " ".join(f"{name} {value:.4g}" for name, value in scalars.items())
            )
            cli.stop_signals.raise_if_pending()
        profiler.stop()
        # The test set is scored by the function the SavedModel serves, traced once for both.
        exported = export.Exported(model, config)
        scores = evaluate(exported.predict, *test)
        test_loss, test_accuracy = scores["loss"], scores["accuracy"]
        if env.is_chief:
            with runs.writing(run_dir):
                exported.save(run_dir)
        metrics = record("complete", test_loss=test_loss, test_accuracy=test_accuracy)
    print(
        f"test accuracy {test_accuracy:.4f} loss {test_loss:.4f} after {len(progress.history)} epochs, "
        # The run's name, not its path: the path is the container's; the host's last line names the host's.
        f"{progress.training_seconds:.1f} s of training — run {run_dir.name}",
        flush=True,
    )
    if not env.is_chief:
        shutil.rmtree(run_dir, ignore_errors=True)
    return metrics


class Profiler:
    """Traces global steps [start, stop) with the TF profiler into the run's TensorBoard dir."""

    def __init__(self, steps: tuple[int, int] | None, logdir: Path) -> None:
        self.steps = steps
        self.logdir = logdir
        self.active = False

    def before_steps(self, first: int, count: int) -> None:
        """Before the call that runs steps [first, first + count): traces whole calls, from the one that
        holds START to the one before STOP."""
        if self.steps is None:
            return
        start, stop = self.steps
        if not self.active and first < stop and first + count > start:
            tf.profiler.experimental.start(str(self.logdir))
            self.active = True
        elif self.active and first >= stop:
            self.stop()

    def step_marker(self, step: int) -> contextlib.AbstractContextManager[object]:
        """While tracing, marks a call as step `step`, so the profile's overview can time steps."""
        if not self.active:
            return contextlib.nullcontext()
        return tf.profiler.experimental.Trace("train", step_num=step, _r=1)

    def stop(self) -> None:
        if self.active:
            tf.profiler.experimental.stop()
            self.active = False


def _command(argv: Sequence[str] | None) -> None:
    train(parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(_command, argv)


if __name__ == "__main__":
    sys.exit(main())

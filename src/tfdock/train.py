"""Train the CNN: one custom loop for every device setup (default, MirroredStrategy, MultiWorkerMirrored).

Usage: python -m tfdock.train [--dataset fashion-mnist] [--epochs N] [--resume [RUN_DIR]] ... (see --help)

A run lives in <output-dir>/<run-name>/ with config.json, checkpoints/, tensorboard/, metrics.json (rewritten
after every epoch) and, at the end, model.keras and saved_model/. <output-dir>/latest points at the
newest run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfdock import cli, data, export, pipeline, runtime
from tfdock import model as cnn
from tfdock.config import LATEST, TrainConfig, parse_args
from tfdock.errors import ConfigError, OutputError
from tfdock.files import write_text_atomically

EVAL_BATCH_SIZE = 1000
# A short warm-up, fixed in epochs rather than a fraction of the run: the peak rate is what makes the first
# epoch count, and a long warm-up (a quarter of 10 epochs) delayed 90% test accuracy to the 4th epoch.
ONECYCLE_WARMUP_EPOCHS = 0.3
ONECYCLE_MAX_WARMUP_FRACTION = 0.25  # for very short runs
ONECYCLE_START_DIVISOR = 10  # warm up from peak/10


def warmup_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """The length of every warm-up: onecycle's, and the replicas' (ONECYCLE_WARMUP_EPOCHS, capped)."""
    return min(
        round(steps_per_epoch * ONECYCLE_WARMUP_EPOCHS),
        int(steps_per_epoch * config.epochs * ONECYCLE_MAX_WARMUP_FRACTION),
    )


def replica_warmup_steps(config: TrainConfig, steps_per_epoch: int, replicas: int) -> int:
    """Steps over which a rate scaled up for `replicas` ramps from the one-replica rate (0: no ramp). Adam at
    8x its peak from the first step, before its moment estimates settle, can diverge (Goyal et al. 2017
    warm up for the same reason); onecycle warms up on its own."""
    if replicas == 1 or config.lr_schedule == "onecycle":
        return 0
    return max(1, warmup_steps(config, steps_per_epoch))


@keras.saving.register_keras_serializable("tfdock")
class ReplicaWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule` (or a constant rate) times a factor that rises linearly from 1/replicas at step 0 to 1 at
    `warmup_steps` and stays 1: the first step runs at the one-replica rate, every step after the warm-up as
    `schedule` says. Not saved with model.keras (the export has no optimizer); serialisable all the same."""

    def __init__(
        self,
        schedule: float | keras.optimizers.schedules.LearningRateSchedule,
        warmup_steps: int,
        replicas: int,
    ) -> None:
        self.schedule = schedule
        self.warmup_steps = warmup_steps
        self.replicas = replicas

    def __call__(self, step: Any) -> Any:
        rate = self.schedule(step) if callable(self.schedule) else self.schedule
        progress = keras.ops.minimum(keras.ops.cast(step, "float32") / self.warmup_steps, 1.0)
        start = 1 / self.replicas
        return rate * (start + (1 - start) * progress)

    def get_config(self) -> dict[str, Any]:
        schedule = self.schedule
        if not isinstance(schedule, float):
            schedule = keras.optimizers.schedules.serialize(schedule)
        return {
            "schedule": schedule,
            "warmup_steps": self.warmup_steps,
            "replicas": self.replicas,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ReplicaWarmup:
        schedule = config.pop("schedule")
        if not isinstance(schedule, float):
            schedule = keras.optimizers.schedules.deserialize(schedule)
        return cls(schedule, **config)


def learning_rate_schedule(
    config: TrainConfig, peak: float, steps_per_epoch: int, replicas: int = 1
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The rate by global step; `peak` is already scaled for `replicas` (see replica_warmup_steps)."""
    total_steps = steps_per_epoch * config.epochs
    schedule: float | keras.optimizers.schedules.LearningRateSchedule
    if config.lr_schedule == "constant":
        schedule = peak
    elif config.lr_schedule == "restarts":
        # SGDR: cosine cycles that double in length (1, 2, 4, 8 epochs for a 15-epoch run), sized so that the
        # last one ends with the run (rounded up: never a restart in its last steps). Each cycle ends at a low
        # rate, so the model is good early (after the first epoch), not only at the end.
        cycles = max(1, int(math.log2(config.epochs + 1)))
        schedule = keras.optimizers.schedules.CosineDecayRestarts(
            peak, first_decay_steps=math.ceil(total_steps / (2**cycles - 1)), t_mul=2.0, m_mul=1.0
        )
    elif config.lr_schedule == "cosine":
        schedule = keras.optimizers.schedules.CosineDecay(peak, decay_steps=total_steps)
    else:
        ramp = warmup_steps(config, steps_per_epoch)
        schedule = keras.optimizers.schedules.CosineDecay(
            peak / ONECYCLE_START_DIVISOR,
            decay_steps=total_steps - ramp,
            warmup_target=peak,
            warmup_steps=ramp,
        )
    ramp = replica_warmup_steps(config, steps_per_epoch, replicas)
    return ReplicaWarmup(schedule, ramp, replicas) if ramp else schedule


def make_optimizer(
    config: TrainConfig, env: runtime.Runtime, steps_per_epoch: int
) -> keras.optimizers.Optimizer:
    schedule = learning_rate_schedule(config, env.learning_rate, steps_per_epoch, env.replicas)
    optimizer: keras.optimizers.Optimizer = keras.optimizers.Adam(schedule)
    if env.loss_scaled:
        # Holds the scale and its growth counter (checkpointed with the optimizer); the Trainer's step
        # applies them, not LossScaleOptimizer.apply_gradients (see Trainer._loss_scaled_step).
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


class Trainer:
    """The compiled pieces of the loop: distributed train steps and a distributed evaluation.

    `label_smoothing` applies to the training loss only; evaluation always reports plain cross-entropy.
    """

    def __init__(
        self,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        env: runtime.Runtime,
        label_smoothing: float = 0.0,
        inference_model: keras.Model | None = None,
    ) -> None:
        self.model = model
        # The model as exported (cnn.for_inference), for the final scores; epochs are scored on `model` alone.
        self.inference_model = inference_model or model
        self.optimizer = optimizer
        self.strategy = env.strategy
        with self.strategy.scope():
            # Create the slot variables now: created lazily inside the replicated step, they break Mirrored.
            optimizer.build(model.trainable_variables)
            # (loss sum, correct, count) since the last take_train_metrics: each replica adds its own, and
            # reading sums them, so the replicas reduce once per epoch instead of three times per step.
            self._train_totals = tf.Variable(
                tf.zeros(3),
                trainable=False,
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.SUM,
            )
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)
        self.label_smoothing = label_smoothing
        # Keras's sparse loss has no label smoothing: the training loss takes one-hot labels instead.
        self.smoothed_loss_fn = keras.losses.CategoricalCrossentropy(
            label_smoothing=label_smoothing, reduction=None
        )
        # With one replica XLA compiles the whole step, apply included; with several, only the per-replica
        # maths: the all-reduce and apply stay outside it (XLA on CPUs cannot hold the apply's merge_call).
        whole_step = env.jit_compile and env.replicas == 1 and not env.loss_scaled
        self._gradients = tf.function(self._gradients_fn, jit_compile=env.jit_compile and not whole_step)
        self._replica_step = (
            tf.function(self._replica_step_fn, jit_compile=True) if whole_step else self._replica_step_fn
        )
        self._train_step = tf.function(self._step)
        self._train_steps = tf.function(self._train_steps_fn)
        self._eval_step = tf.function(self._eval_step_fn)

    @property
    def loss_scale(self) -> keras.optimizers.LossScaleOptimizer | None:
        return self.optimizer if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer) else None

    def _sums(
        self, labels: tf.Tensor, probabilities: tf.Tensor, training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        if training and self.label_smoothing:
            classes = tf.shape(probabilities)[-1]
            one_hot = tf.one_hot(tf.cast(labels, tf.int32), classes, dtype=probabilities.dtype)
            losses = self.smoothed_loss_fn(one_hot, probabilities)
        else:
            losses = self.loss_fn(labels, probabilities)
        correct = tf.cast(tf.argmax(probabilities, axis=-1) == tf.cast(labels, tf.int64), tf.float32)
        return tf.reduce_sum(losses), tf.reduce_sum(correct), tf.cast(tf.size(labels), tf.float32)

    def _gradients_fn(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[Any, tf.Tensor]:
        """The gradients (times the loss scale, when there is one) and this replica's (loss sum, correct,
        count)."""
        global_batch = tf.cast(tf.size(labels), tf.float32) * self.strategy.num_replicas_in_sync
        with tf.GradientTape() as tape:
            probabilities = self.model(images, training=True)
            loss_sum, correct, count = self._sums(labels, probabilities, training=True)
            loss = loss_sum / global_batch  # so that summing gradients over replicas averages them
            if self.loss_scale:
                loss = self.loss_scale.scale_loss(loss)
        gradients = tape.gradient(loss, self.model.trainable_variables)
        return gradients, tf.stack([loss_sum, correct, count])

    def _train_steps_fn(self, batches: Any, steps: tf.Tensor) -> None:
        for _ in tf.range(steps):
            self._step(*next(batches))

    def _step(self, images: Any, labels: Any) -> None:
        if self.loss_scale:
            self._loss_scaled_step(images, labels)
        else:
            self.strategy.run(self._replica_step, args=(images, labels))

    def _replica_step_fn(self, images: tf.Tensor, labels: tf.Tensor) -> None:
        gradients, totals = self._gradients(images, labels)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables, strict=True))
        self._train_totals.assign_add(totals)

    def _loss_scaled_step(self, images: Any, labels: Any) -> None:
        """Dynamic loss scaling as LossScaleOptimizer does it (unscale and apply when every gradient is
        finite, and double the scale after `dynamic_growth_steps` such steps; else skip the step and halve
        the scale), with one difference: "finite" is decided over the gradients of EVERY replica. Keras 3.15
        decides it from the first replica's own gradients before they are summed, so an overflow on another
        replica applied inf to the weights (Mirrored) or left one worker all-reducing alone (multi-worker)."""
        scaler = self.loss_scale
        assert scaler is not None

        def replica_gradients(images: tf.Tensor, labels: tf.Tensor) -> tuple[Any, tf.Tensor]:
            gradients, totals = self._gradients(images, labels)
            self._train_totals.assign_add(totals)
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
            return gradients, tf.cast(tf.logical_not(finite), tf.float32)

        gradients, overflowed = self.strategy.run(replica_gradients, args=(images, labels))
        # Summed over the replicas of every worker: all of them take the same branch below.
        overflows = self.strategy.reduce(tf.distribute.ReduceOp.SUM, overflowed, axis=None)

        def apply_unscaled() -> None:
            scale = tf.convert_to_tensor(scaler.dynamic_scale)

            def replica_apply(gradients: list[tf.Tensor]) -> None:
                unscaled = [gradient / scale for gradient in gradients]
                scaler.inner_optimizer.apply_gradients(
                    zip(unscaled, self.model.trainable_variables, strict=True)
                )

            self.strategy.run(replica_apply, args=(gradients,))
            counter = tf.convert_to_tensor(scaler.step_counter)
            grow = counter >= scaler.dynamic_growth_steps - 1
            scaler.step_counter.assign(tf.where(grow, tf.zeros_like(counter), counter + 1))
            scaler.dynamic_scale.assign(tf.where(grow, scale * 2, scale))

        def skip() -> None:
            scaler.step_counter.assign(tf.zeros_like(scaler.step_counter))
            scaler.dynamic_scale.assign(scaler.dynamic_scale * 0.5)

        # In cross-replica context: a cond in replica context may not hold the apply's merge_call.
        tf.cond(overflows == 0, apply_unscaled, skip)

    def _eval_step_fn(self, images: Any, labels: Any, as_exported: bool) -> tuple[tf.Tensor, ...]:
        model = self.inference_model if as_exported else self.model

        def replica_step(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, ...]:
            return self._sums(labels, model(images, training=False))

        per_replica = self.strategy.run(replica_step, args=(images, labels))
        return tuple(
            self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in per_replica
        )

    def distribute(self, dataset: tf.data.Dataset) -> Any:
        return self.strategy.experimental_distribute_dataset(dataset)

    def train_step(self, batch: Any) -> None:
        """One training step on one distributed batch."""
        self._train_step(*batch)

    def train_steps(self, batches: Any, steps: int) -> None:
        """The next `steps` training steps, on batches from `batches` (an iterator over `distribute`)."""
        self._train_steps(batches, tf.constant(steps, tf.int64))

    def take_train_metrics(self) -> tuple[float, float]:
        """(loss, accuracy) over the steps since the last call."""
        loss_sum, correct, count = self._train_totals.read_value().numpy()
        self._train_totals.assign(tf.zeros(3))
        return float(loss_sum / count), float(correct / count)

    def evaluate(self, dataset: tf.data.Dataset, as_exported: bool = False) -> tuple[float, float]:
        """(mean loss, accuracy) over a whole dataset, of the model being trained or of it as exported."""
        totals = np.zeros(3)
        for batch in self.distribute(dataset):
            totals += [float(value) for value in self._eval_step(*batch, as_exported)]
        loss_sum, correct, count = totals
        return loss_sum / count, correct / count


# --- run directories --------------------------------------------------------------------------------------


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# TensorFlow's file errors carry the errno only as its text, after the path: look for these in the message.
_WRITE_ERRNOS = (*_NO_SPACE, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)


def _write_failure_reason(error: OSError | tf.errors.OpError) -> tuple[str, bool]:
    """(a short reason, whether it is a full disk) for a failed write: OSError from Python's own writes,
    tf.errors.OpError (ResourceExhaustedError, UnknownError, ...) from checkpoint and SavedModel writes."""
    if isinstance(error, OSError):
        return error.strerror or str(error), error.errno in _NO_SPACE
    for code in _WRITE_ERRNOS:
        if os.strerror(code) in error.message:
            return os.strerror(code), code in _NO_SPACE
    lines = error.message.strip().splitlines()
    return (lines[0].strip() if lines else type(error).__name__), False


@contextlib.contextmanager
def _writing(run_dir: Path) -> Iterator[None]:
    """Turns a failed write under run_dir into one OutputError line. Only around writes: an OpError from the
    training maths (a ResourceExhaustedError for memory, say) must not read as a disk problem."""
    try:
        yield
    except (OSError, tf.errors.OpError) as error:
        reason, full = _write_failure_reason(error)
        hint = "free space (or pick another --output-dir)" if full else "make --output-dir writable"
        raise OutputError(f"cannot write {run_dir}: {reason}", f"{hint} and rerun with --resume") from None


def _new_run_name() -> str:
    # The random suffix keeps two runs started in the same second apart.
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def _point_latest_at(run_dir: Path) -> None:
    latest = run_dir.parent / LATEST
    temp = run_dir.parent / f".{LATEST}.tmp-{os.getpid()}"
    temp.unlink(missing_ok=True)
    temp.symlink_to(run_dir.name)  # relative, so it survives a different mount point on the host
    os.replace(temp, latest)


def _resolve_resume(config: TrainConfig) -> Path:
    assert config.resume is not None
    output_dir = Path(config.output_dir)
    candidates = [output_dir / LATEST] if config.resume == LATEST else [Path(config.resume)]
    if config.resume != LATEST and not Path(config.resume).is_absolute():
        candidates.append(output_dir / config.resume)
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return candidate.resolve()
    raise ConfigError(
        f"--resume {config.resume}: no run with a config.json at {' or '.join(map(str, candidates))}",
        "pass a run directory under --output-dir",
    )


def _prepare_run_dir(config: TrainConfig, env: runtime.Runtime) -> Path:
    if not env.is_chief:
        # Workers other than the chief must run the same collective saves, but into throwaway files.
        return Path(tempfile.mkdtemp(prefix="tfdock-worker-"))
    output_dir = Path(config.output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        run_dir = output_dir / (config.run_name or _new_run_name())
        run_dir.mkdir()
    except FileExistsError:
        raise ConfigError(f"run dir {run_dir} already exists", "use --resume or another --run-name") from None
    except OSError as error:
        raise ConfigError(f"cannot create a run dir under {output_dir} ({error.strerror or error})") from None
    with _writing(run_dir):
        write_text_atomically(run_dir / "config.json", config.to_json())
        _point_latest_at(run_dir)
    return run_dir


# --- the run ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Progress:
    """What metrics.json records; rebuilt from it on resume."""

    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def training_seconds(self) -> float:
        return sum(epoch["training_seconds"] for epoch in self.history)

    @classmethod
    def load(cls, path: Path, epochs_done: int) -> Progress:
        if not path.exists():
            return cls()
        saved = json.loads(path.read_text())
        # metrics.json may be one epoch ahead of the last checkpoint if the run died between the two writes.
        return cls(saved["history"][:epochs_done], saved["wall_seconds"])


Arrays = tuple[np.ndarray, np.ndarray]  # (uint8 images N x 28 x 28, uint8 labels N)


def _load_arrays(config: TrainConfig) -> tuple[Arrays, Arrays, Arrays]:
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
    resume_dir = _resolve_resume(config) if config.resume else None
    if resume_dir:
        saved = TrainConfig.from_json_file(resume_dir / "config.json")
        config = dataclasses.replace(
            saved,
            data_dir=config.data_dir,
            output_dir=config.output_dir,
            profile=config.profile,
            download=config.download,
            step_delay=config.step_delay,  # a test's pacing, not part of the run
            steps_per_call=config.steps_per_call,  # the same weights whatever it is
            resume=str(resume_dir),
        )
    env = runtime.setup(config)
    (train_images, train_labels), validation, test = _load_arrays(config)
    run_dir = resume_dir if resume_dir and env.is_chief else _prepare_run_dir(config, env)

    batches_for_epoch = pipeline.training_batches(
        train_images,
        train_labels,
        env.global_batch_size,
        config.seed,
        config.flip_from_epoch,
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
        optimizer = make_optimizer(config, env, steps_per_epoch)
        epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
        inference_model = cnn.for_inference(model, config)
    trainer = Trainer(model, optimizer, env, config.label_smoothing, inference_model)
    # The data order is a function of (seed, epoch); with dropout's RNG state these objects are everything
    # --resume needs to continue exactly. (Keras does not checkpoint the seed generators on its own.)
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, epochs_done=epochs_done, dropout_rng=cnn.rng_states(model)
    )
    manager = tf.train.CheckpointManager(checkpoint, run_dir / "checkpoints", max_to_keep=None)
    progress = Progress()
    if resume_dir:
        # Every worker restores the chief's checkpoint (the `checkpoint` index names only complete ones).
        restore_from = tf.train.latest_checkpoint(str(resume_dir / "checkpoints"))
        if restore_from:
            checkpoint.restore(restore_from).assert_existing_objects_matched()
            print(f"resumed {resume_dir.name} from {Path(restore_from).name}", flush=True)
        progress = Progress.load(resume_dir / "metrics.json", int(epochs_done.numpy()))

    validation_batches = pipeline.evaluation_batches(*validation, EVAL_BATCH_SIZE)
    test_batches = pipeline.evaluation_batches(*test, EVAL_BATCH_SIZE)
    with _writing(run_dir):
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
            "config": dataclasses.asdict(config),
            "history": progress.history,
        }
        with _writing(run_dir):
            write_text_atomically(run_dir / "metrics.json", json.dumps(metrics, indent=2))
        return metrics

    with cli.stop_signals.deferred():
        for epoch in range(int(epochs_done.numpy()), config.epochs):
            epoch_started = time.perf_counter()
            # The global step, counted here: reading optimizer.iterations back would wait for every step.
            step = epoch * steps_per_epoch
            end = step + steps_per_epoch
            batches = iter(trainer.distribute(batches_for_epoch(epoch)))
            while step < end:
                steps = min(config.steps_per_call, end - step)
                profiler.before_steps(step, steps)
                with profiler.step_marker(step):
                    trainer.train_steps(batches, steps)
                if config.step_delay:  # tests only: work that outlasts a chosen moment on any machine
                    time.sleep(config.step_delay * steps)
                step += steps
                cli.stop_signals.raise_if_pending()
            training_seconds = time.perf_counter() - epoch_started
            loss, accuracy = trainer.take_train_metrics()
            scalars = {
                "loss": loss,
                "accuracy": accuracy,
                "learning_rate": float(optimizer.learning_rate),
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
            with _writing(run_dir):
                with writer.as_default(step=epoch + 1):
                    for name, value in scalars.items():
                        tf.summary.scalar(name, value)
                writer.flush()
                manager.save(checkpoint_number=epoch + 1)
            print(
                f"epoch {epoch + 1}/{config.epochs} "
                + " ".join(f"{name} {value:.4g}" for name, value in scalars.items()),
                flush=True,
            )
            cli.stop_signals.raise_if_pending()
        profiler.stop()
        test_loss, test_accuracy = trainer.evaluate(test_batches, as_exported=True)
        if env.is_chief:
            with _writing(run_dir):
                export.save(model, config, run_dir)
        metrics = record("complete", test_loss=test_loss, test_accuracy=test_accuracy)
    print(
        f"test accuracy {test_accuracy:.4f} loss {test_loss:.4f} after {len(progress.history)} epochs, "
        f"{progress.training_seconds:.1f} s of training — {run_dir}",
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

"""The optimizer: Adam with its learning-rate schedule (restarts, onecycle, cosine, constant), a warm-up when
the rate is scaled up for several replicas, and the loss scale's holder under mixed float16."""

from __future__ import annotations

import math
from typing import Any, TypeAlias

import keras

from tfdock import runtime
from tfdock.config import TrainConfig

# A short warm-up, fixed in epochs rather than a fraction of the run: the peak rate is what makes the first
# epoch count, and a long warm-up (a quarter of 10 epochs) delayed 90% test accuracy to the 4th epoch.
ONECYCLE_WARMUP_EPOCHS = 0.3
ONECYCLE_MAX_WARMUP_FRACTION = 0.25  # for very short runs
ONECYCLE_START_DIVISOR = 10  # warm up from peak/10

# Adam's second-moment decay: Keras's 0.999 averages the squared gradients over about 1,000 steps, longer
# than the first restart cycle (421 steps); 0.99's 100 follow the early, fast-changing gradients. Means over
# six seeds: +0.39 points of test accuracy at epoch 0.75, +0.09 after 15 epochs (docs/recipe.md).
ADAM_BETA_2 = 0.99

# A constant rate, or one by step.
Schedule: TypeAlias = float | keras.optimizers.schedules.LearningRateSchedule


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
        schedule: Schedule,
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
) -> Schedule:
    """The rate by global step; `peak` is already scaled for `replicas` (see replica_warmup_steps)."""
    total_steps = steps_per_epoch * config.epochs
    schedule: Schedule
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


def rate_at(schedule: Schedule, step: int) -> float:
    """The rate of global step `step` (counted from 0). An optimizer's `learning_rate` is the rate of the
    step it takes next: read after an epoch that ends a restart cycle, it is already the next cycle's peak."""
    return float(schedule(step)) if callable(schedule) else schedule


def make_optimizer(
    config: TrainConfig, env: runtime.Runtime, steps_per_epoch: int
) -> keras.optimizers.Optimizer:
    """Adam on the run's schedule (for callers that need only the optimizer)."""
    schedule = learning_rate_schedule(config, env.learning_rate, steps_per_epoch, env.replicas)
    return optimizer_for(schedule, env)


def optimizer_for(schedule: Schedule, env: runtime.Runtime) -> keras.optimizers.Optimizer:
    optimizer: keras.optimizers.Optimizer = keras.optimizers.Adam(schedule, beta_2=ADAM_BETA_2)
    if env.loss_scaled:
        # Holds the scale and its growth counter (checkpointed with the optimizer); the Trainer's step
        # applies them, not LossScaleOptimizer.apply_gradients (see Trainer._loss_scaled_step).
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer

"""The GPU path's decisions, proven without a GPU: precision by compute capability, the learning-rate warm-up
with replicas, what the device summary says, and several steps per call giving the same weights."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

from tfdock import data, optimizer, pipeline, runtime, train
from tfdock import model as cnn
from tfdock.config import TrainConfig
from tfdock.trainer import Trainer

# (GPU, compute capability, what auto picks): the generations a user may have.
GPUS = [
    ("K80", (3, 7), runtime.FLOAT32),
    ("P4 / P40 / GTX 1080", (6, 1), runtime.FLOAT32),
    ("P100", (6, 0), runtime.FLOAT32),
    ("V100", (7, 0), runtime.MIXED_FLOAT16),
    ("T4 / RTX 2080", (7, 5), runtime.MIXED_FLOAT16),
    ("A100", (8, 0), runtime.MIXED_BFLOAT16),
    ("RTX 3090", (8, 6), runtime.MIXED_BFLOAT16),
    ("RTX 4090 / L4", (8, 9), runtime.MIXED_BFLOAT16),
    ("H100", (9, 0), runtime.MIXED_BFLOAT16),
    ("B200", (10, 0), runtime.MIXED_BFLOAT16),
    ("RTX 5090", (12, 0), runtime.MIXED_BFLOAT16),
]


@pytest.mark.parametrize(("gpu", "capability", "expected"), GPUS, ids=[gpu for gpu, _, _ in GPUS])
def test_auto_precision_follows_the_compute_capability(
    gpu: str, capability: tuple[int, int], expected: str
) -> None:
    policy, reason = runtime.precision_policy("auto", [capability])
    assert policy == expected
    assert f"compute capability {capability[0]}.{capability[1]}" in reason


def test_auto_precision_goes_by_the_weakest_gpu_and_is_off_on_cpu() -> None:
    assert runtime.precision_policy("auto", [(8, 0), (7, 5)])[0] == runtime.MIXED_FLOAT16
    assert runtime.precision_policy("auto", [(9, 0), (6, 1)])[0] == runtime.FLOAT32
    assert runtime.precision_policy("auto", [(8, 0), None])[0] == runtime.FLOAT32
    policy, reason = runtime.precision_policy("auto", [])
    assert policy == runtime.FLOAT32 and "no GPU" in reason


def test_an_explicit_precision_wins_over_the_gpu() -> None:
    assert runtime.precision_policy("off", [(9, 0)]) == (runtime.FLOAT32, "--mixed-precision off")
    assert runtime.precision_policy("on", [(6, 1)])[0] == runtime.MIXED_FLOAT16
    assert runtime.precision_policy("bfloat16", [])[0] == runtime.MIXED_BFLOAT16


def _rates(
    schedule: float | keras.optimizers.schedules.LearningRateSchedule, steps: list[int]
) -> list[float]:
    return [float(schedule(step)) if callable(schedule) else schedule for step in steps]


@pytest.mark.parametrize("lr_schedule", ["restarts", "cosine", "constant"])
def test_eight_replicas_warm_up_from_the_one_replica_rate(lr_schedule: str) -> None:
    config, steps_per_epoch, peak = TrainConfig(epochs=15, lr_schedule=lr_schedule), 100, 0.004
    warmup = optimizer.replica_warmup_steps(config, steps_per_epoch, replicas=8)
    assert warmup == round(steps_per_epoch * optimizer.ONECYCLE_WARMUP_EPOCHS)
    warmed = optimizer.learning_rate_schedule(config, peak * 8, steps_per_epoch, replicas=8)
    plain = optimizer.learning_rate_schedule(config, peak * 8, steps_per_epoch, replicas=1)
    assert _rates(warmed, [0]) == pytest.approx([peak])  # the one-replica rate at step 0
    assert _rates(warmed, [warmup // 2]) < _rates(plain, [warmup // 2])
    after = [warmup, warmup + 1, steps_per_epoch * 3]
    assert _rates(warmed, after) == pytest.approx(_rates(plain, after))


def test_one_replica_has_no_warm_up_and_onecycle_keeps_its_own() -> None:
    config = TrainConfig(epochs=15)
    assert optimizer.replica_warmup_steps(config, 100, replicas=1) == 0
    one = optimizer.learning_rate_schedule(config, 0.004, 100, replicas=1)
    assert isinstance(one, keras.optimizers.schedules.CosineDecayRestarts)  # as before: the default recipe
    assert float(one(0)) == pytest.approx(0.004)
    onecycle = TrainConfig(epochs=15, lr_schedule="onecycle")
    assert optimizer.replica_warmup_steps(onecycle, 100, replicas=8) == 0
    rate = optimizer.learning_rate_schedule(onecycle, 0.032, 100, replicas=8)
    assert float(rate(0)) == pytest.approx(0.032 / optimizer.ONECYCLE_START_DIVISOR)


def test_the_warm_up_schedule_survives_keras_serialisation() -> None:
    schedule = optimizer.learning_rate_schedule(TrainConfig(epochs=3), 0.016, 50, replicas=4)
    copy = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert _rates(copy, [0, 7, 30]) == pytest.approx(_rates(schedule, [0, 7, 30]))


def _runtime(**changes: object) -> runtime.Runtime:
    fields: dict[str, object] = dict(
        strategy=tf.distribute.get_strategy(),
        strategy_name="default",
        replicas=1,
        is_chief=True,
        devices=("CPU:0",),
        gpus=(),
        precision=runtime.FLOAT32,
        precision_reason="auto: no GPU, and mixed precision is slow on CPU",
        collectives="",
        jit_compile=False,
        global_batch_size=128,
        learning_rate=0.004,
    )
    fields.update(changes)
    return runtime.Runtime(**fields)  # type: ignore[arg-type]


def test_the_summary_says_the_precision_and_why_the_warm_up_and_the_collectives() -> None:
    single = _runtime().summary()
    assert "| precision: float32 (auto: no GPU, and mixed precision is slow on CPU) |" in single
    assert "warm" not in single and "collectives" not in single
    eight = _runtime(
        strategy_name="MultiWorkerMirroredStrategy",
        replicas=8,
        gpus=tuple(f"GPU:{i}" for i in range(8)),
        precision=runtime.MIXED_BFLOAT16,
        precision_reason="auto: compute capability 8.0 has bfloat16 tensor cores",
        collectives="NCCL across workers",
        global_batch_size=1024,
        learning_rate=0.032,
    ).summary(warmup_steps=30)
    assert "(8 replicas; global batch 1024, learning rate x8, warmed up from x1 over 30 steps; " in eight
    assert "collectives: NCCL across workers)" in eight
    assert "precision: mixed_bfloat16 (auto: compute capability 8.0 has bfloat16 tensor cores)" in eight


def test_bfloat16_and_float32_need_no_loss_scaling() -> None:
    assert _runtime(precision=runtime.MIXED_FLOAT16).loss_scaled
    assert not _runtime(precision=runtime.MIXED_BFLOAT16).loss_scaled
    assert not _runtime().loss_scaled


@pytest.mark.slow
def test_several_steps_per_call_train_bit_identical_weights(fashion_dir: Path, tmp_path: Path) -> None:
    # 1000 images, batch 128, 10% held out: 7 steps an epoch, so 3 per call leaves a shorter last call.
    common = dict(data_dir=str(fashion_dir), output_dir=str(tmp_path), epochs=2, limit_train=1000)
    weights = []
    for steps_per_call in (1, 3):
        config = TrainConfig(
            **common, limit_test=200, steps_per_call=steps_per_call, run_name=f"n{steps_per_call}"
        )  # type: ignore[arg-type]
        metrics = train.train(config)
        assert metrics["epochs_completed"] == 2
        weights.append(keras.models.load_model(tmp_path / config.run_name / "model.keras").get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))


@pytest.fixture
def op_determinism_off() -> Iterator[None]:
    """Op determinism is the process's, and TensorFlow's public API can only turn it on: an earlier test's
    deterministic setup would leave it on here, and XLA has no deterministic max-pool gradient. (A real run
    sets it up once, and --jit-compile requires --no-deterministic.)"""
    was_on = tf_config.is_op_determinism_enabled()
    tf_config.disable_op_determinism()
    yield
    if was_on:
        tf_config.enable_op_determinism()


@pytest.mark.slow
@pytest.mark.usefixtures("op_determinism_off")
def test_one_replica_compiles_the_whole_step_with_xla_apply_included(fashion_dir: Path) -> None:
    # A tiny model: XLA's compile time on a CPU is what this test would otherwise spend.
    config = TrainConfig(jit_compile=True, deterministic=False, filters=(4,), dense=0, batch_norm=False)
    env = runtime.setup(config)
    model = cnn.build(config)
    trainer = Trainer(model, keras.optimizers.Adam(), env)
    assert trainer._replica_step.function_spec.jit_compile  # type: ignore[attr-defined]
    splits = data.load(fashion_dir, "fashion-mnist")
    batches = pipeline.training_batches(splits.train_images[:256], splits.train_labels[:256], 64, seed=0)
    before = [weight.copy() for weight in model.get_weights()]
    trainer.train_steps(iter(trainer.distribute(batches(0))), 4)
    after = model.get_weights()
    assert all(np.isfinite(weight).all() for weight in after)
    assert not any(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    loss, accuracy = trainer.take_train_metrics()
    assert np.isfinite(loss) and 0 <= accuracy <= 1

"""Real training on a real Fashion-MNIST subset: accuracy, layout, determinism, resume, signals, replicas."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from containerlib import SRC, TEST_SUBSET, TRAIN_SUBSET, run_module, train_args

from tfdock import model as cnn
from tfdock import optimizer, train
from tfdock.config import TrainConfig

pytestmark = pytest.mark.slow


def test_each_epoch_reports_the_learning_rate_of_its_last_step(trained_run: Path) -> None:
    # 2 epochs of `restarts` are one cosine cycle: the first ends mid-way down, the second at its bottom. The
    # optimizer's own learning_rate, read after the last step, is the next cycle's peak (what was reported).
    metrics = json.loads((trained_run / "metrics.json").read_text())
    config = TrainConfig.from_json_file(trained_run / "config.json")
    steps_per_epoch = (TRAIN_SUBSET - round(TRAIN_SUBSET * config.validation_split)) // config.batch_size
    schedule = optimizer.learning_rate_schedule(config, config.learning_rate, steps_per_epoch)
    reported = [epoch["learning_rate"] for epoch in metrics["history"]]
    assert reported == pytest.approx([float(schedule(steps_per_epoch * n - 1)) for n in (1, 2)])
    assert reported[0] == pytest.approx(config.learning_rate / 2, rel=0.05)
    assert reported[1] < config.learning_rate / 1000


def _same_weights(run_a: Path, run_b: Path) -> bool:
    weights_a, weights_b = (
        keras.models.load_model(run / "model.keras").get_weights() for run in (run_a, run_b)
    )
    return all(np.array_equal(a, b) for a, b in zip(weights_a, weights_b, strict=True))


def test_short_real_training_beats_chance_and_writes_the_run_layout(trained_run: Path) -> None:
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["epochs_completed"] == 2
    assert metrics["test_accuracy"] >= 0.70, metrics["test_accuracy"]  # chance is 0.10
    assert len(metrics["history"]) == 2 and metrics["history"][1]["val_accuracy"] > 0.6
    assert metrics["config"]["limit_test"] == TEST_SUBSET and metrics["replicas"] == 1
    assert metrics["training_seconds"] > 0 and metrics["images_per_second"] > 0
    assert json.loads((trained_run / "config.json").read_text())["epochs"] == 2
    latest = trained_run.parent / "latest"
    assert latest.is_symlink() and os.readlink(latest) == trained_run.name  # relative link
    assert (trained_run / "checkpoints" / "ckpt-2.index").is_file()
    assert list((trained_run / "tensorboard").glob("events.out.tfevents.*"))
    assert not [path for path in trained_run.rglob(".*tmp-*")], "temp files left in the run dir"


def _in_process_config(fashion_dir: Path, output_dir: Path, **changes: object) -> TrainConfig:
    fields = dict(
        data_dir=str(fashion_dir),
        output_dir=str(output_dir),
        epochs=1,
        limit_train=2000,
        limit_test=500,
        **changes,
    )
    return TrainConfig(**fields)  # type: ignore[arg-type]


def test_same_seed_gives_bit_identical_weights(fashion_dir: Path, tmp_path: Path) -> None:
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        # Mirroring, shifts and dropout from the start: their draws are seeded too
        config = _in_process_config(
            fashion_dir, tmp_path, seed=seed, run_name=name, flip_after=0, translate=1, dropout=0.2
        )
        train.train(config)
    assert _same_weights(tmp_path / "a", tmp_path / "b")
    assert not _same_weights(tmp_path / "a", tmp_path / "c")  # the seed really matters


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def _start_training(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        [sys.executable, "-m", "tfdock.train", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


# The killed run is paced (FOR TESTS ONLY: --step-delay after every step, not kept by --resume): after its
# first checkpoint, epoch 2 lasts at least its steps x STEP_DELAY_S on any machine.
STEP_DELAY_S = 0.05


LOSS_SCALE_STATE = "optimizer/{}/.ATTRIBUTES/VARIABLE_VALUE"  # LossScaleOptimizer's, in a checkpoint
# float16 on a CPU is emulated (about 6x slower here): the mixed-precision case trains on fewer images.
MIXED_PRECISION_SUBSET = 1280


@pytest.mark.parametrize("precision", ["off", "on"], ids=["float32", "mixed-float16"])
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(
    fashion_dir: Path, tmp_path: Path, precision: str
) -> None:
    """With --mixed-precision on (float16 with dynamic loss scaling), the loss scale's state is part of the
    run's: the scale and its count of finite steps since it last changed (it doubles after 2000)."""
    subset = TRAIN_SUBSET if precision == "off" else MIXED_PRECISION_SUBSET
    steps_per_epoch = (subset - subset // 10) // 64  # 10% held out, batch 64
    # Mirroring and shifts from the second epoch and dropout, so that the resumed epochs must also repeat the
    # same flips, shifts and dropout masks.
    recipe = ["--epochs", "3", "--flip", "on", "--flip-after", "1", "--dropout", "0.2"]
    recipe += ["--translate", "1", "--translate-after", "1"]
    recipe += ["--mixed-precision", precision]
    recipe += ["--limit-train", str(subset)]
    paced = ["--step-delay", str(STEP_DELAY_S)]
    process = _start_training(train_args(fashion_dir, tmp_path, *recipe, "--run-name", "killed", *paced))
    checkpoints = tmp_path / "killed" / "checkpoints"
    _wait_for(checkpoints / "ckpt-1.index", process)
    time.sleep(steps_per_epoch // 2 * STEP_DELAY_S)  # into the second epoch: at most half its steps are done
    process.kill()
    process.wait()
    assert not (checkpoints / "ckpt-2.index").exists(), "epoch 2 finished before the kill: is it paced?"
    # A newer checkpoint cut short by the kill (data, no entry in the `checkpoint` index) must be ignored.
    (checkpoints / "ckpt-9.index").write_bytes(b"half")
    (checkpoints / "ckpt-9.data-00000-of-00001").write_bytes(b"half-written")

    resumed = run_module(
        "tfdock.train", ["--output-dir", str(tmp_path), "--data-dir", str(fashion_dir), "--resume"]
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed killed from ckpt-" in resumed.stdout
    uninterrupted = run_module(
        "tfdock.train", train_args(fashion_dir, tmp_path, *recipe, "--run-name", "whole")
    )
    assert uninterrupted.returncode == 0, uninterrupted.stderr

    killed, whole = (
        json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("killed", "whole")
    )
    assert killed["epochs_completed"] == whole["epochs_completed"] == 3
    assert [epoch["epoch"] for epoch in killed["history"]] == [1, 2, 3]
    assert abs(killed["test_accuracy"] - whole["test_accuracy"]) <= 0.005
    # Data order, RNG and optimizer state are all restored, so on CPU the result is in fact identical.
    assert _same_weights(tmp_path / "killed", tmp_path / "whole")
    if precision == "on":
        # Both end with every step counted (no overflow, so the scale stayed): a resume that lost the
        # counter would count the resumed steps only, and double the scale 2000 steps late.
        for name in ("killed", "whole"):
            saved = tf.train.load_checkpoint(str(tmp_path / name / "checkpoints" / "ckpt-3"))
            assert saved.get_tensor(LOSS_SCALE_STATE.format("step_counter")) == 3 * steps_per_epoch
            assert saved.get_tensor(LOSS_SCALE_STATE.format("dynamic_scale")) == 2.0**15
        assert [epoch["loss_scale"] for epoch in killed["history"]] == [2.0**15] * 3

    config = TrainConfig.from_json_file(tmp_path / "killed" / "config.json")
    manager_state = tf.train.get_checkpoint_state(str(checkpoints))
    assert Path(manager_state.model_checkpoint_path).name == "ckpt-3"
    for prefix in manager_state.all_model_checkpoint_paths:
        model = cnn.build(config)
        tf.train.Checkpoint(model=model).restore(prefix).expect_partial().assert_existing_objects_matched()


def test_sigterm_stops_cleanly_with_exit_143(fashion_dir: Path, tmp_path: Path) -> None:
    process = _start_training(train_args(fashion_dir, tmp_path, "--epochs", "50", "--run-name", "stopped"))
    _wait_for(tmp_path / "stopped" / "checkpoints" / "ckpt-1.index", process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr and "interrupted by SIGTERM" in stderr
    run_dir = tmp_path / "stopped"
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "running"
    assert not (run_dir / "model.keras").exists()
    assert not [path for path in run_dir.rglob(".*tmp-*")], "temp files left in the run dir"


def test_two_logical_cpus_train_under_mirrored_strategy(fashion_dir: Path, tmp_path: Path) -> None:
    args = ["--cpu-devices", "2", "--batch-size", "64", "--run-name", "mirrored"]  # global batch 128
    result = run_module("tfdock.train", train_args(fashion_dir, tmp_path, *args))
    assert result.returncode == 0, result.stderr
    summary = result.stdout.splitlines()[0]
    assert "GPUs visible to TensorFlow: none" in summary
    assert "strategy: MirroredStrategy over logical CPUs (2 replicas; global batch 128" in summary
    assert "stand-in for 2 GPUs" in summary
    metrics = json.loads((tmp_path / "mirrored" / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["global_batch_size"] == 128
    assert metrics["test_accuracy"] >= 0.65, metrics["test_accuracy"]

"""Mixed float16 with more than one replica: an overflow on ONE replica skips the step on EVERY replica.

Two logical CPUs stand in for two GPUs (MirroredStrategy), and two processes on 127.0.0.1 with TF_CONFIG
for two workers (MultiWorkerMirroredStrategy): no GPU exists here, and the loss-scaling logic under test is
the same on either. The overflow comes from the data: one replica's real Fashion-MNIST images times 1000,
beyond float16's 65504, so only that replica's gradients are non-finite. The step is the real Trainer's.

Each case runs in a fresh process (this file, run as a script): logical CPUs and TF_CONFIG must be set
before TensorFlow initialises its devices.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve()
SRC = HERE.parents[2] / "src"
PER_REPLICA_BATCH = 8
OVERFLOW_FACTOR = 1000.0  # 255 x 1000 is inf in float16
INITIAL_SCALE = 2.0**15  # LossScaleOptimizer's default
# Only reached when the run is broken: a worker all-reducing alone waits for its peer for ever.
HANG_TIMEOUT_S = 300


def _script(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)  # only the two-worker case has a cluster
    env.update(env_extra or {})
    return subprocess.Popen(
        [sys.executable, str(HERE), *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _reports(processes: list[subprocess.Popen]) -> list[dict[str, Any]]:
    """Each process's JSON report; a process that does not finish in HANG_TIMEOUT_S fails the test."""
    reports = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=HANG_TIMEOUT_S)
            assert process.returncode == 0, stderr[-3000:]
            reports.append(json.loads(stdout.strip().splitlines()[-1]))
    except subprocess.TimeoutExpired:
        pytest.fail(f"a replica process hung for {HANG_TIMEOUT_S} s: its peer skipped a collective")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return reports


def _assert_skipped_then_applied(report: dict[str, Any]) -> None:
    skipped, applied = report["after_overflow"], report["after_clean_step"]
    assert skipped["all_finite"], "the overflow reached the weights"
    assert skipped["unchanged"], "some replica applied the overflowing step"
    assert skipped["replicas_agree"]
    assert skipped["iterations"] == 0
    assert skipped["loss_scale"] == INITIAL_SCALE / 2
    # The next, clean step applies on every replica alike, at the halved scale.
    assert applied["all_finite"] and applied["replicas_agree"]
    assert not applied["unchanged"]
    assert applied["iterations"] == 1
    assert applied["loss_scale"] == INITIAL_SCALE / 2


@pytest.mark.parametrize("poisoned", [0, 1])
def test_an_overflow_on_one_of_two_mirrored_replicas_skips_the_step_on_both(
    fashion_dir: Path, poisoned: int
) -> None:
    (report,) = _reports([_script(str(fashion_dir), str(poisoned), "--cpu-devices", "2")])
    assert report["replicas"] == 2 and report["strategy"] == "MirroredStrategy over logical CPUs"
    _assert_skipped_then_applied(report)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("poisoned", [0, 1])
def test_an_overflow_on_one_of_two_workers_skips_the_step_on_both(fashion_dir: Path, poisoned: int) -> None:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers = [
        _script(
            str(fashion_dir),
            str(poisoned),
            env_extra={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})},
        )
        for i in range(2)
    ]
    reports = _reports(workers)
    for report in reports:
        assert report["replicas"] == 2 and report["strategy"] == "MultiWorkerMirroredStrategy"
        _assert_skipped_then_applied(report)
    assert reports[0]["digest"] == reports[1]["digest"], "the workers' weights differ"


# --- the replica side: one process, run as a script ---------------------------------------------------------


def _one_overflow_then_one_clean_step(fashion_dir: str, poisoned: int, cpu_devices: int) -> dict[str, Any]:
    import numpy as np
    import tensorflow as tf

    from tfdock import data, runtime
    from tfdock import model as cnn
    from tfdock.config import TrainConfig
    from tfdock.optimizer import make_optimizer
    from tfdock.trainer import Trainer

    # A tiny CNN without batch norm: BN's moving statistics would take the inf in the forward pass, which no
    # loss scaling can prevent; this test is about the weights the optimizer updates.
    config = TrainConfig(
        mixed_precision="on", cpu_devices=cpu_devices, filters=(4,), dense=0, batch_norm=False
    )
    env = runtime.setup(config)
    with env.strategy.scope():
        model = cnn.build(config)
        optimizer = make_optimizer(config, env, steps_per_epoch=10)
    trainer = Trainer(model, optimizer, env, config.label_smoothing)

    splits = data.load(Path(fashion_dir), "fashion-mnist")
    images = splits.train_images[: PER_REPLICA_BATCH * env.replicas].astype("float32")
    labels = splits.train_labels[: PER_REPLICA_BATCH * env.replicas]

    def batch(poison: int | None) -> tuple[Any, Any]:
        def for_replica(context: tf.distribute.InputContext) -> tuple[tf.Tensor, tf.Tensor]:
            replica = context.replica_id_in_sync_group
            rows = slice(replica * PER_REPLICA_BATCH, (replica + 1) * PER_REPLICA_BATCH)
            factor = OVERFLOW_FACTOR if replica == poison else 1.0
            return tf.constant(images[rows] * factor), tf.constant(labels[rows])

        # A tuple (images, labels) of per-replica values, as a distributed dataset yields it.
        return env.strategy.experimental_distribute_values_from_function(for_replica)

    def copies() -> list[list[np.ndarray]]:
        """The trainable weights as each local replica holds them."""
        per_variable = [
            [np.asarray(copy) for copy in env.strategy.experimental_local_results(variable.value)]
            for variable in model.trainable_variables
        ]
        return [list(replica) for replica in zip(*per_variable, strict=True)]

    def state(before: list[list[np.ndarray]]) -> dict[str, Any]:
        now = copies()
        return {
            "all_finite": all(np.isfinite(w).all() for replica in now for w in replica),
            "unchanged": all(
                np.array_equal(a, b)
                for old, new in zip(before, now, strict=True)
                for a, b in zip(old, new, strict=True)
            ),
            "replicas_agree": all(
                np.array_equal(a, b) for replica in now[1:] for a, b in zip(now[0], replica, strict=True)
            ),
            "iterations": int(optimizer.iterations.numpy()),
            "loss_scale": float(optimizer.dynamic_scale.numpy()),
        }

    initial = copies()
    trainer.train_step(batch(poison=poisoned))
    after_overflow = state(initial)
    trainer.train_step(batch(poison=None))
    after_clean_step = state(initial)
    digest = hashlib.sha256(b"".join(w.tobytes() for w in copies()[0])).hexdigest()
    return {
        "replicas": env.replicas,
        "strategy": env.strategy_name,
        "after_overflow": after_overflow,
        "after_clean_step": after_clean_step,
        "digest": digest,
    }


if __name__ == "__main__":
    fashion, poisoned_replica, *rest = sys.argv[1:]
    devices = int(rest[1]) if rest[:1] == ["--cpu-devices"] else 1
    print(json.dumps(_one_overflow_then_one_clean_step(fashion, int(poisoned_replica), devices)))

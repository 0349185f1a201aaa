"""`invoke train --workers N` end to end: N containers, one run, real Fashion-MNIST (a subset).

Every run uses the same global recipe: a global batch of 64 at a peak learning rate of 0.012. One worker
gets it with `--batch-size 64 --learning-rate 0.012`; two workers with half of each per replica, which the
trainer scales back up (global batch = per-replica batch x replicas, learning rate likewise). Same data
order, same number of steps: the accuracies differ only by what is per-replica (batch-norm statistics
over 32 instead of 64 images, dropout draws), which this suite shows as a few points on 500 test images.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from enginelib import ROOT, invoke, limit_train, step_delay_for, steps_per_epoch

pytestmark = pytest.mark.engine

# 2 epochs of 6,000 images (188 steps): after 1 epoch of 2,000 (31 steps) test accuracy is still a coin toss
# of the seed (one replica against two, in one process: 54 vs 33%, 46 vs 41%, 23 vs 17% for seeds 0-2; the
# earlier model 64 vs 63%, 63 vs 41%, 20 vs 29%); after 188 steps 88.8 vs 89.0%, 89.0 vs 88.0%, 89.0 vs 89.2%.
SUBSET = ["--limit-train", "6000", "--limit-test", "500"]
EPOCHS = 2
ONE_WORKER = ["--batch-size", "64", "--learning-rate", "0.012"]
TWO_WORKERS = ["--batch-size", "32", "--learning-rate", "0.006"]
# Five times the gap observed above. It catches a run that does not learn as one (diverged, stuck near
# chance), not every broken one: the learning rate scaled twice (88.2-88.8%) or one replica training alone
# on half the data (85.4-87.8%) land within it, and the strategy, replicas and global batch asserted below
# do not tell those apart either (no test here shows the workers' gradients are exchanged).
ACCURACY_TOLERANCE = 0.05
CHANCE = 0.10


def train_args(output_dir: Path, fashion_mnist: Path, workers: int, *options: str) -> list[str]:
    return [
        "train",
        *("--workers", str(workers), "--gpus", "none"),
        *("--data-dir", str(fashion_mnist), "--output-dir", str(output_dir)),
        *options,
    ]


def run_dirs(output_dir: Path) -> list[Path]:
    return [path for path in output_dir.iterdir() if path.is_dir() and not path.is_symlink()]


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def assert_nothing_left(client, run_dir: Path) -> None:
    """The job's containers and its private network are gone (other jobs may be running alongside)."""
    job = f"tfdock-train-{run_dir.name}"
    assert not client.containers.list(all=True, filters={"name": job})
    networks = client.networks.list(filters={"label": "io.tfdock.project=tfdock"})
    assert job not in [network.name for network in networks]


def test_two_workers_train_one_run_as_well_as_one_worker(tmp_path, client, runtime_image, fashion_mnist):
    epochs = ["--epochs", str(EPOCHS)]
    single = invoke(*train_args(tmp_path / "one", fashion_mnist, 1, *epochs), "--", *SUBSET, *ONE_WORKER)
    assert single.returncode == 0, single.stderr
    double = invoke(*train_args(tmp_path / "two", fashion_mnist, 2, *epochs), "--", *SUBSET, *TWO_WORKERS)
    assert double.returncode == 0, double.stderr

    for worker in (0, 1):
        assert f"[worker {worker}] epoch {EPOCHS}/{EPOCHS} " in double.stdout
        assert f"[worker {worker}] test accuracy " in double.stdout
    (run_dir,) = run_dirs(tmp_path / "two")  # the chief's; the other worker wrote to scratch only
    result, reference = metrics(run_dir), metrics(run_dirs(tmp_path / "one")[0])
    assert result["status"] == "complete"
    assert result["strategy"] == "MultiWorkerMirroredStrategy"
    assert result["replicas"] == 2
    assert result["global_batch_size"] == reference["global_batch_size"] == 64
    assert result["test_accuracy"] > 3 * CHANCE and reference["test_accuracy"] > 3 * CHANCE
    assert abs(result["test_accuracy"] - reference["test_accuracy"]) <= ACCURACY_TOLERANCE, (
        result["test_accuracy"],
        reference["test_accuracy"],
    )
    assert_nothing_left(client, run_dir)


def test_a_killed_worker_stops_the_run_and_resume_finishes_it(tmp_path, client, runtime_image, fashion_mnist):
    epochs, outputs = 3, tmp_path / "outputs"
    outputs.mkdir()
    # Paced (FOR TESTS ONLY): epochs 2 and 3, every step followed by --step-delay, last 10 s or more: longer
    # than the test takes to see the first checkpoint and kill worker 1, on any machine. The resume is not.
    images = limit_train(2000)
    delay = step_delay_for(10.0, (epochs - 1) * steps_per_epoch(images, batch_size=64))
    paced = ["--limit-train", str(images), "--limit-test", "500", "--step-delay", f"{delay:.3f}"]
    args = train_args(outputs, fashion_mnist, 2, "--epochs", str(epochs), "--", *paced, *TWO_WORKERS)
    # Files, not pipes: nobody reads a pipe while the test waits, and a full one would stall the run.
    with (tmp_path / "stdout").open("w") as stdout, (tmp_path / "stderr").open("w+") as stderr:
        started = subprocess.Popen(
            [sys.executable, "-m", "invoke", *args], cwd=ROOT, stdout=stdout, stderr=stderr
        )
        try:
            run_dir = _wait_for_first_checkpoint(outputs, started)
            # Epoch 2 is under way: kill the non-chief worker as an OOM kill or a lost host would.
            (worker_1,) = client.containers.list(filters={"name": f"tfdock-train-{run_dir.name}-w1"})
            worker_1.kill()
            started.wait(timeout=120)
        finally:
            if started.poll() is None:
                started.terminate()
                started.wait(timeout=60)
        stderr.seek(0)
        errors = stderr.read()

    # The killed worker's status (128 + SIGKILL) is the run's, and the one line names it.
    assert started.returncode == 137, errors[-3000:]
    assert "worker 1 (" in errors and "exited with 137" in errors, errors
    assert not (run_dir / "checkpoints" / f"ckpt-{epochs}.index").exists(), "finished before the kill"
    assert_nothing_left(client, run_dir)

    resumed = invoke(*train_args(outputs, fashion_mnist, 2, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    for worker in (0, 1):  # every worker restores the chief's checkpoint, or their collectives disagree
        assert f"[worker {worker}] resumed {run_dir.name} from ckpt-" in resumed.stdout
    assert run_dirs(outputs) == [run_dir]
    result = metrics(run_dir)
    assert result["status"] == "complete"
    assert result["epochs_completed"] == epochs
    assert [epoch["epoch"] for epoch in result["history"]] == list(range(1, epochs + 1))
    assert result["replicas"] == 2
    assert_nothing_left(client, run_dir)


def _wait_for_first_checkpoint(output_dir: Path, process: subprocess.Popen, timeout: float = 600) -> Path:
    """The run dir, once the chief has checkpointed epoch 1."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run_dir in run_dirs(output_dir):
            if (run_dir / "checkpoints" / "ckpt-1.index").exists():
                return run_dir
        if process.poll() is not None:
            pytest.fail(f"the run ended (exit {process.returncode}) before its first checkpoint")
        time.sleep(0.1)
    pytest.fail(f"no first checkpoint within {timeout} s")

"""Two `invoke train` at once into the same output dir: both finish, each in a run dir of its own."""

from __future__ import annotations

import json

import pytest
from enginelib import containers_mounting, start_invoke
from faultlib import train_args

pytestmark = pytest.mark.faults


def test_two_trainings_at_once_into_one_output_dir_both_finish_apart(
    client, fashion_mnist, runtime_image, scratch, tally
):
    processes = [start_invoke(*train_args(fashion_mnist, scratch, "--epochs", "1")) for _ in range(2)]
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, (stdout + stderr)[-3000:]
    runs = sorted(path for path in scratch.iterdir() if path.is_dir() and not path.is_symlink())
    assert len(runs) == 2, runs
    for run_dir in runs:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["status"] == "complete" and metrics["epochs_completed"] == 1
        assert (run_dir / "model.keras").is_file()
    assert (scratch / "latest").resolve() in runs
    tally.containers_left += len(containers_mounting(client, scratch))
    assert containers_mounting(client, scratch) == []

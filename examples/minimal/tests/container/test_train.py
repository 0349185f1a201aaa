"""minimal_example.train against its contract: it trains on real data and writes its outputs; a bad data
dir is one `error:` line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REAL_DATA = Path(os.environ.get("TFDOCK_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))


def run_trainer(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "minimal_example.train", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.skipif(not REAL_DATA.is_dir() and not os.environ.get("CI"), reason="no real data here")
def test_it_trains_and_leaves_the_model_and_metrics_under_the_outputs_dir(tmp_path):
    result = run_trainer("--data-dir", str(REAL_DATA), "--output-dir", str(tmp_path), "--epochs", "1",
                         "--limit", "2048", "--run-name", "small")  # fmt: skip
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "small"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 1 and 0.1 < metrics["test_accuracy"] <= 1.0
    import keras

    model = keras.models.load_model(run_dir / "model.keras")
    assert model.predict(keras.ops.zeros((2, 28, 28, 1)), verbose=0).shape == (2, 10)
    assert sorted(path.name for path in run_dir.iterdir()) == ["metrics.json", "model.keras"]


def test_a_data_dir_without_the_dataset_is_one_error_line_and_exit_2(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    result = run_trainer("--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: ") and str(tmp_path) in line
    assert not (tmp_path / "out").exists()


def test_a_bad_flag_value_is_exit_2():
    assert run_trainer("--epochs", "0").returncode == 2

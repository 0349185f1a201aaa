"""evaluate and predict against a trained run, on real test images."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from containerlib import idx_bytes, run_module
from PIL import Image

from tfdock import data

pytestmark = pytest.mark.slow


def test_evaluate_writes_accuracy_and_confusion_matrix(
    trained_run: Path, fashion_dir: Path, tmp_path: Path
) -> None:
    result = run_module(
        "tfdock.evaluate",
        [
            "--model",
            str(trained_run),
            "--data-dir",
            str(fashion_dir),
            "--output-dir",
            str(tmp_path),
            "--limit-test",
            "1000",
        ],
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "evaluation.json").read_text())
    confusion = np.array(report["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == 1000
    assert report["accuracy"] == pytest.approx(np.trace(confusion) / 1000)
    assert report["accuracy"] >= 0.7
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_reads_pictures_of_any_size_and_idx_files(
    trained_run: Path, fashion: data.Splits, tmp_path: Path
) -> None:
    trouser = int(np.flatnonzero(fashion.test_labels == 1)[0])  # trousers are the easiest class
    picture = tmp_path / "trouser.png"
    Image.fromarray(fashion.test_images[trouser]).convert("RGB").resize((84, 84)).save(picture)
    idx = tmp_path / "t10k-images-idx3-ubyte.gz"
    idx.write_bytes(gzip.compress(idx_bytes(fashion.test_images[:3])))
    result = run_module(
        "tfdock.predict", ["--model", str(trained_run / "saved_model"), str(picture), str(idx)]
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"{picture}: Trouser (")
    assert lines[1].startswith(f"{idx}[0]: ")

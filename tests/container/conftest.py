"""Shared fixtures: the real Fashion-MNIST files, small IDX sets cut from them, and a trained run."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from tfdock import data

SRC = Path(__file__).resolve().parents[2] / "src"
FASHION_DIR = Path(os.environ.get("TFDOCK_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
TRAIN_SUBSET = 6000
TEST_SUBSET = 2000


def _missing_data() -> str:
    """Why the real Fashion-MNIST cannot be used ("" when it can)."""
    if all((FASHION_DIR / f"{name}.gz").is_file() for name in (*data.TRAIN_FILES, *data.TEST_FILES)):
        return ""
    return (
        f"real Fashion-MNIST not found in {FASHION_DIR} (set TFDOCK_FASHION_MNIST_DIR, or install the "
        "Debian package dataset-fashion-mnist)"
    )


def pytest_report_header() -> str:
    missing = _missing_data()
    if missing:
        return f"Fashion-MNIST MISSING, the tests that need it {'fail' if _required() else 'skip'}: {missing}"
    return f"Fashion-MNIST: {FASHION_DIR}"


def _required() -> bool:
    """CI (set by .ci/run and GitHub) or a run that named a dir (TFDOCK_FASHION_MNIST_DIR) needs the data."""
    return bool(os.environ.get("CI") or os.environ.get("TFDOCK_FASHION_MNIST_DIR"))


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """The real files. Missing, the tests that need them fail where they are required, else skip saying why
    (and the report's header says so)."""
    missing = _missing_data()
    if missing and _required():
        pytest.fail(missing)
    if missing:
        pytest.skip(missing)
    return FASHION_DIR


@pytest.fixture(scope="session")
def fashion(fashion_dir: Path) -> data.Splits:
    return data.load(fashion_dir, "fashion-mnist")


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialise uint8 images (N x 28 x 28) or labels (N) as an IDX file."""
    magic = data.IMAGES_MAGIC if array.ndim == 3 else data.LABELS_MAGIC
    return struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_idx_set(directory: Path, splits: data.Splits, compress: bool = True) -> Path:
    """Write the four IDX files of `splits` into directory (gzipped like the published files, or raw)."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = (splits.train_images, splits.train_labels, splits.test_images, splits.test_labels)
    for name, array in zip((*data.TRAIN_FILES, *data.TEST_FILES), arrays, strict=True):
        payload = idx_bytes(array)
        if compress:
            (directory / f"{name}.gz").write_bytes(gzip.compress(payload, mtime=0))
        else:
            (directory / name).write_bytes(payload)
    return directory


@pytest.fixture(scope="session")
def small_fashion(fashion: data.Splits) -> data.Splits:
    """A real 600/200 slice: enough to exercise readers and the pipeline quickly."""
    return data.Splits(
        fashion.train_images[:600],
        fashion.train_labels[:600],
        fashion.test_images[:200],
        fashion.test_labels[:200],
    )


def run_module(
    module: str, args: Sequence[str], timeout: float = 900, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m <module> args` as the container would, capturing output. The timeout only bounds a
    hang: it is sized for a loaded machine."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "TF_CPP_MIN_LOG_LEVEL": "2", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def train_args(data_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    """A small, fast training run on the real files: 6k train (10% held out) / 2k test, batch 64 so that
    two epochs still make enough steps for batch norm's moving averages to settle."""
    return [
        "--data-dir",
        str(data_dir),
        "--output-dir",
        str(output_dir),
        "--limit-train",
        str(TRAIN_SUBSET),
        "--limit-test",
        str(TEST_SUBSET),
        "--epochs",
        "2",
        "--batch-size",
        "64",
        *extra,
    ]


@pytest.fixture(scope="session")
def trained_run(fashion_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short real training run shared by the export, evaluate and predict tests. Mirroring starts after
    the first of its two epochs, so its exports are the full-length recipe's: with the mirror mean."""
    output_dir = tmp_path_factory.mktemp("outputs")
    args = train_args(fashion_dir, output_dir, "--flip-after", "1", "--run-name", "shared")
    result = run_module("tfdock.train", args)
    assert result.returncode == 0, result.stderr
    return output_dir / "shared"


@pytest.fixture
def single_line_error() -> Callable[[subprocess.CompletedProcess], str]:
    def check(result: subprocess.CompletedProcess) -> str:
        assert result.returncode == 2, (result.returncode, result.stderr)
        assert "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.stderr
        return errors[0]

    return check

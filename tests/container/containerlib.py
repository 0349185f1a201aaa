"""Helpers of the container suite's tests: IDX files cut from real data, and the package's modules run
as the container runs them. (Fixtures are conftest.py's; tests import these from here.)"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfdock import data

SRC = Path(__file__).resolve().parents[2] / "src"
TRAIN_SUBSET = 6000
TEST_SUBSET = 2000


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

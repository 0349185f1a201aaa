"""Shared fixtures: the real Fashion-MNIST files, small IDX sets cut from them, and a trained run."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from containerlib import run_module, train_args

from tfdock import data

FASHION_DIR = Path(os.environ.get("TFDOCK_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))


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


@pytest.fixture(scope="session")
def small_fashion(fashion: data.Splits) -> data.Splits:
    """A real 600/200 slice: enough to exercise readers and the pipeline quickly."""
    return data.Splits(
        fashion.train_images[:600],
        fashion.train_labels[:600],
        fashion.test_images[:200],
        fashion.test_labels[:200],
    )


@pytest.fixture(scope="session")
def trained_run(fashion_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short real training run shared by the export, evaluate and predict tests. Mirroring and shifts
    start after the first of its two epochs, so its exports are the full-length recipe's: averaged over the
    mirror and the shifted views."""
    output_dir = tmp_path_factory.mktemp("outputs")
    args = train_args(
        fashion_dir, output_dir, "--flip-after", "1", "--translate-after", "1", "--run-name", "shared"
    )
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

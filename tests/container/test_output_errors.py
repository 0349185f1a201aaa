"""Outputs that cannot be written (a full disk, above all) end a run in one line, never a traceback.

A real full disk needs root (a small tmpfs: tests/faults/test_disk_full.py). Here a file-size limit stands
in for it: with RLIMIT_FSIZE below a checkpoint's size and SIGXFSZ ignored, the kernel fails the write
with EFBIG exactly where a full disk fails it with ENOSPC, and no root is needed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import tensorflow as tf
from containerlib import SRC, train_args

from tfdock import runs
from tfdock.errors import OutputError

# Above config.json, metrics.json and the first TensorBoard events; below the first checkpoint.
FILE_SIZE_LIMIT = 64 * 1024


def _digests(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
        tf.errors.ResourceExhaustedError(
            None,
            None,
            "/out/run/checkpoints/ckpt-1.data-00000-of-00001; No space left on device",
        ),
    ],
)
def test_a_full_disk_is_one_output_error_with_the_resume_hint(error: Exception) -> None:
    with pytest.raises(OutputError) as caught, runs.writing(Path("/out/run")):
        raise error
    assert str(caught.value) == (
        "cannot write /out/run: No space left on device — "
        "free space (or pick another --output-dir) and rerun with --resume"
    )
    assert caught.value.exit_code == 2


def test_other_errors_are_not_mistaken_for_output_errors() -> None:
    with pytest.raises(ValueError), runs.writing(Path("/out/run")):
        raise ValueError("not a write")


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an ignored disposition survives exec
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


@pytest.mark.slow
def test_an_unwritable_checkpoint_fails_in_one_line_and_keeps_the_previous_run(
    fashion_dir: Path, tmp_path: Path, single_line_error: Callable[[subprocess.CompletedProcess], str]
) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC), "TF_CPP_MIN_LOG_LEVEL": "2"}
    small = ["--limit-train", "1000", "--limit-test", "200", "--epochs", "1"]

    def run(*extra: str, preexec_fn: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "tfdock.train", *train_args(fashion_dir, tmp_path, *small, *extra)]
        return subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=300, check=False, preexec_fn=preexec_fn
        )

    previous = run("--run-name", "previous")
    assert previous.returncode == 0, previous.stderr
    before = _digests(tmp_path / "previous")

    limited = run("--run-name", "limited", preexec_fn=_limit_file_size)
    line = single_line_error(limited)
    assert line.startswith(f"error: cannot write {tmp_path / 'limited'}: File too large"), line
    assert line.endswith("and rerun with --resume"), line
    assert _digests(tmp_path / "previous") == before
    assert {"model.keras", "metrics.json"} <= before.keys()

"""The output disk fills up mid-run: one clear line, and the previous run's files are untouched."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from enginelib import invoke
from faultlib import assert_one_line_error, train_args

pytestmark = pytest.mark.faults

PAGE = 4096
# Room for the new run's config, metrics and TensorBoard file, not for its first checkpoint (~740 KB).
HEADROOM_BYTES = 256 * 1024


def digests(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def tmpfs_bytes_for(directory: Path) -> int:
    """What a copy of directory takes on tmpfs, which allocates whole pages per file."""
    return sum(-(-path.stat().st_size // PAGE) * PAGE for path in directory.rglob("*") if path.is_file())


@contextlib.contextmanager
def small_tmpfs(mount_point: Path, size_bytes: int):
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(mount_point)], check=True
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_output_disk_fails_in_one_line_and_keeps_the_previous_run(
    fashion_mnist, runtime_image, scratch, tally
):
    previous_outputs = scratch / "previous"
    finished = invoke(*train_args(fashion_mnist, previous_outputs, "--epochs", "1"))
    assert finished.returncode == 0, finished.stderr[-3000:]
    previous = (previous_outputs / "latest").resolve()

    full = scratch / "full"
    full.mkdir()
    with small_tmpfs(full, tmpfs_bytes_for(previous) + HEADROOM_BYTES):
        shutil.copytree(previous, full / previous.name)
        before = digests(full / previous.name)
        result = invoke(*train_args(fashion_mnist, full, "--epochs", "2"))
        tally.faults_injected += 1
        after = digests(full / previous.name)
    assert after == before
    assert {"model.keras", "metrics.json"} <= before.keys()
    assert result.returncode == 2, result.stderr[-3000:]  # docs/reliability.md: a full disk exits 2
    assert_one_line_error(result)

"""Writers that share a process id never take each other's temp names.

Two `invoke train` into one output dir are two containers whose trainers both run as pid 1 (or near it), and
both point `latest` at their run. Threads of one process share a pid too: here they stand in for the two
containers, and each writes many times so that the writes interleave.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from tfdock import runs
from tfdock.files import write_text_atomically

WRITES_PER_WRITER = 300


def _run_at_once(writers: list[Callable[[], None]]) -> list[OSError]:
    errors: list[OSError] = []
    start = threading.Barrier(len(writers))

    def repeat(write: Callable[[], None]) -> None:
        start.wait()
        try:
            for _ in range(WRITES_PER_WRITER):
                write()
        except OSError as error:  # reported by the test
            errors.append(error)

    threads = [threading.Thread(target=repeat, args=(write,)) for write in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_two_runs_pointing_latest_at_once_both_succeed(tmp_path: Path) -> None:
    run_dirs = [tmp_path / name for name in ("20261207-115823-aaaaaa", "20261207-115823-bbbbbb")]
    for run_dir in run_dirs:
        run_dir.mkdir()
    errors = _run_at_once([lambda run_dir=run_dir: runs._point_latest_at(run_dir) for run_dir in run_dirs])
    assert errors == []
    assert (tmp_path / "latest").resolve() in run_dirs
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == [*(run_dir.name for run_dir in run_dirs), "latest"], "a temp name left behind"


def test_two_atomic_writes_of_one_file_at_once_both_succeed(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    texts = ['{"writer": 1}', '{"writer": 2}']
    errors = _run_at_once([lambda text=text: write_text_atomically(path, text) for text in texts])
    assert errors == []
    assert path.read_text() in texts
    assert [child.name for child in tmp_path.iterdir()] == ["metrics.json"]

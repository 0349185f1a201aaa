"""Writes of files a user keeps: always to a temp name in the same directory, then renamed into place."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path


def sibling_temp_path(path: Path, kind: str = "tmp") -> Path:
    """A hidden name next to `path` that no concurrent writer picks. Not the process id: in a container the
    trainer is pid 1 or near it, so two containers sharing an output dir would write the same temp name."""
    return path.with_name(f".{path.stem}.{kind}-{secrets.token_hex(4)}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yields a temp path (same directory and suffix) to write; renamed to `path` only if the block succeeds.

    Works for files and directories alike; an existing directory at `path` is swapped out, then removed.
    """
    temp = sibling_temp_path(path)
    try:
        yield temp
        if path.is_dir() and not path.is_symlink():
            old = sibling_temp_path(path, "old")
            os.replace(path, old)
            os.replace(temp, path)
            shutil.rmtree(old)
        else:
            os.replace(temp, path)
    finally:
        if temp.is_dir():
            shutil.rmtree(temp)
        else:
            temp.unlink(missing_ok=True)


def write_text_atomically(path: Path, text: str) -> None:
    with atomic_path(path) as temp, temp.open("w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())

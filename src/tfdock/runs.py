"""Run dirs: a new one (its config.json and the `latest` link), the one --resume names, the Progress that
metrics.json records, and one clear line when a write into them fails."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import tensorflow as tf

from tfdock.config import LATEST, TrainConfig
from tfdock.errors import ConfigError, OutputError
from tfdock.files import sibling_temp_path, write_text_atomically

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# TensorFlow's file errors carry the errno only as its text, after the path: look for these in the message.
_WRITE_ERRNOS = (*_NO_SPACE, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)


def _write_failure_reason(error: OSError | tf.errors.OpError) -> tuple[str, bool]:
    """(a short reason, whether it is a full disk) for a failed write: OSError from Python's own writes,
    tf.errors.OpError (ResourceExhaustedError, UnknownError, ...) from checkpoint and SavedModel writes."""
    if isinstance(error, OSError):
        return error.strerror or str(error), error.errno in _NO_SPACE
    for code in _WRITE_ERRNOS:
        if os.strerror(code) in error.message:
            return os.strerror(code), code in _NO_SPACE
    lines = error.message.strip().splitlines()
    return (lines[0].strip() if lines else type(error).__name__), False


@contextlib.contextmanager
def writing(run_dir: Path) -> Iterator[None]:
    """Turns a failed write under run_dir into one OutputError line. Only around writes: an OpError from the
    training maths (a ResourceExhaustedError for memory, say) must not read as a disk problem."""
    try:
        yield
    except (OSError, tf.errors.OpError) as error:
        reason, full = _write_failure_reason(error)
        hint = "free space (or pick another --output-dir)" if full else "make --output-dir writable"
        raise OutputError(f"cannot write {run_dir}: {reason}", f"{hint} and rerun with --resume") from None


def _new_run_name() -> str:
    # The random suffix keeps two runs started in the same second apart.
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def _point_latest_at(run_dir: Path) -> None:
    latest = run_dir.parent / LATEST
    temp = sibling_temp_path(latest)
    temp.symlink_to(run_dir.name)  # relative, so it survives a different mount point on the host
    os.replace(temp, latest)


def resolve_resume(config: TrainConfig) -> Path:
    assert config.resume is not None
    output_dir = Path(config.output_dir)
    candidates = [output_dir / LATEST] if config.resume == LATEST else [Path(config.resume)]
    if config.resume != LATEST and not Path(config.resume).is_absolute():
        candidates.append(output_dir / config.resume)
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return candidate.resolve()
    raise ConfigError(
        f"--resume {config.resume}: no run with a config.json at {' or '.join(map(str, candidates))}",
        "pass a run directory under --output-dir",
    )


def prepare(config: TrainConfig, is_chief: bool) -> Path:
    """A new run dir with its config.json, `latest` pointing at it (a throwaway dir off the chief)."""
    if not is_chief:
        # Workers other than the chief must run the same collective saves, but into throwaway files.
        return Path(tempfile.mkdtemp(prefix="tfdock-worker-"))
    output_dir = Path(config.output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        run_dir = output_dir / (config.run_name or _new_run_name())
        run_dir.mkdir()
    except FileExistsError:
        raise ConfigError(f"run dir {run_dir} already exists", "use --resume or another --run-name") from None
    except OSError as error:
        raise ConfigError(f"cannot create a run dir under {output_dir} ({error.strerror or error})") from None
    with writing(run_dir):
        write_text_atomically(run_dir / "config.json", config.to_json())
        _point_latest_at(run_dir)
    return run_dir


@dataclasses.dataclass
class Progress:
    """What metrics.json records; rebuilt from it on resume."""

    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def training_seconds(self) -> float:
        return sum(epoch["training_seconds"] for epoch in self.history)

    @classmethod
    def load(cls, path: Path, epochs_done: int) -> Progress:
        if not path.exists():
            return cls()
        saved = json.loads(path.read_text())
        # metrics.json may be one epoch ahead of the last checkpoint if the run died between the two writes.
        return cls(saved["history"][:epochs_done], saved["wall_seconds"])

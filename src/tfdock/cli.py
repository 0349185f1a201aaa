"""What every `python -m tfdock.*` command shares: one-line errors, exit codes and signal handling."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NoReturn

from tfdock.errors import ConfigError, Interrupted, TfdockError

# Set by tfdock's tasks: JSON {mount point: host dir}, so that an error names a path the user can see
# ("/home/me/project/outputs/run", not "/outputs/run"). Unset when run natively, where paths are the host's.
HOST_PATHS_ENV = "TFDOCK_HOST_PATHS"


def as_the_host_sees(text: str, host_paths: Mapping[str, str] | None = None) -> str:
    """`text` with each mount point that starts a path (`/data`, `/data/x`; not `/database`, `/x/data`)
    replaced by the host dir mounted there; `host_paths` defaults to what the task set in HOST_PATHS_ENV."""
    host_paths = _host_paths() if host_paths is None else host_paths
    if not host_paths:
        return text
    targets = "|".join(re.escape(target) for target in sorted(host_paths, key=len, reverse=True))
    path = re.compile(rf"(?<![\w./-])(?:{targets})(?![\w.-])")
    return path.sub(lambda match: host_paths[match.group()], text)


def _host_paths() -> dict[str, str]:
    try:
        host_paths = json.loads(os.environ.get(HOST_PATHS_ENV) or "{}")
    except ValueError:
        return {}  # only ever written by tfdock's tasks; a garbled value leaves the message as it is
    return host_paths if isinstance(host_paths, dict) else {}


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors become a ConfigError, so they print as one line like every other error."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message, f"see `python -m {self.prog} --help`")


class _StopSignals:
    """SIGINT/SIGTERM handling: raise at once, or, inside `deferred()`, only when the loop asks.

    A training loop defers the signal to its next step boundary so checkpoints and exports are never cut
    short; a second signal while deferred still raises immediately.
    """

    def __init__(self) -> None:
        self.pending: int | None = None
        self.deferring = False

    def handle(self, signum: int, frame: object) -> None:
        if self.deferring and self.pending is None:
            self.pending = signum
            print(f"{signal.Signals(signum).name} received: stopping at the next safe point", file=sys.stderr)
            return
        raise Interrupted(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False

    def raise_if_pending(self) -> None:
        if self.pending is not None:
            signum, self.pending = self.pending, None
            raise Interrupted(signum)


stop_signals = _StopSignals()


def run(command: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None) -> int:
    """Run a CLI body; the single place where expected failures become one stderr line and an exit code."""
    previous = {
        signum: signal.signal(signum, stop_signals.handle) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        command(argv)
    except TfdockError as error:
        print(f"error: {as_the_host_sees(str(error))}", file=sys.stderr)
        return error.exit_code
    except Interrupted as interrupt:
        print(f"interrupted by {signal.Signals(interrupt.signum).name}", file=sys.stderr)
        return interrupt.exit_code
    except KeyboardInterrupt:
        print("interrupted by SIGINT", file=sys.stderr)
        return 130
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0

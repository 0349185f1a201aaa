"""The trainer's console output: one line per epoch, and with TFDOCK_PROGRESS=live a line rewritten in place
while the epoch runs (steps done, images/s, loss, time left).

The host sets TFDOCK_PROGRESS=live when its own stdout is a terminal; a log file or a pipe gets the plain
lines only (unset, or "plain").
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from tfdock.errors import ConfigError

PROGRESS_ENV = "TFDOCK_PROGRESS"
MODES = ("live", "plain")
# At most 4 redraws a second: a person cannot read faster, and reading the loss syncs with the steps.
MIN_REDRAW_INTERVAL_S = 0.25
_ERASE_TO_END = "\x1b[K"


def live_from_environment() -> bool:
    mode = os.environ.get(PROGRESS_ENV) or "plain"
    if mode not in MODES:
        raise ConfigError(
            f"{PROGRESS_ENV}={mode} is not one of {', '.join(MODES)}", "unset it for plain lines"
        )
    return mode == "live"


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class ProgressLine:
    """Prints the epoch lines; when `live`, redraws the running epoch's line between them (throttled)."""

    def __init__(
        self,
        live: bool,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.live = live
        self.stream = stream or sys.stdout
        self.clock = clock
        self._drawn_at = -float("inf")
        self._title = ""
        self._steps = 0
        self._images_per_step = 0
        self._since: tuple[float, int] | None = None  # (time, steps done) at the epoch's first update
        self._shown = False

    def start_epoch(self, epoch: int, epochs: int, steps: int, images_per_step: int) -> None:
        self._title = f"epoch {epoch}/{epochs}"
        self._steps = steps
        self._images_per_step = images_per_step
        self._since = None
        self._drawn_at = -float("inf")  # the first update of an epoch always draws

    def update(self, steps_done: int, loss: Callable[[], float] | None = None) -> None:
        """After `steps_done` of the epoch's steps; `loss` (the epoch's mean so far) is only read to draw."""
        if not self.live:
            return
        now = self.clock()
        if now - self._drawn_at < MIN_REDRAW_INTERVAL_S:
            return
        self._drawn_at = now
        parts = [self._title, f"{steps_done}/{self._steps} steps"]
        # The rate from the epoch's first update on: its first call also builds the epoch's iterator (and,
        # in the first epoch, traces the step), which says nothing about the steps to come.
        if self._since is None:
            self._since = (now, steps_done)
        since_time, since_steps = self._since
        if steps_done > since_steps:
            seconds_per_step = (now - since_time) / (steps_done - since_steps)
            parts.append(f"{self._images_per_step / seconds_per_step:,.0f} images/s")
        if loss is not None:
            parts.append(f"loss {loss():.4f}")
        if steps_done > since_steps:
            parts.append(f"{_duration(seconds_per_step * (self._steps - steps_done))} left")
        self.stream.write("\r" + "  ".join(parts) + _ERASE_TO_END)
        self.stream.flush()
        self._shown = True

    def print(self, line: str) -> None:
        """A line that stays (in place of the live line, if one is shown)."""
        if self._shown:
            self.stream.write("\r" + _ERASE_TO_END)
            self._shown = False
        print(line, file=self.stream, flush=True)

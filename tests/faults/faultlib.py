"""Helpers of the fault-injection suite, on top of the engine suite's (tests/engine/enginelib.py): tiny
paced training runs, exit statuses as a shell reports them, and the house rule for an expected failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# The suite shares the engine suite's support module (its helpers and fixtures), which lives beside that
# suite's tests: run alone, pytest puts only tests/faults on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
import enginelib

STEP_DELAY_S = enginelib.STEP_DELAY_S
# Small enough to keep a run to seconds on two shared cores, big enough for a few steps per epoch.
LIMIT_TRAIN = enginelib.limit_train(1000)
TINY_TRAINING = ["--limit-train", str(LIMIT_TRAIN), "--limit-test", "200"]
STEPS_PER_EPOCH = enginelib.steps_per_epoch(LIMIT_TRAIN)


def paced(step_delay: float = STEP_DELAY_S) -> list[str]:
    """TINY_TRAINING with a pause after every step (FOR TESTS ONLY): an epoch lasts at least
    STEPS_PER_EPOCH x step_delay, however fast the machine."""
    return [*TINY_TRAINING, "--step-delay", str(step_delay)]


def train_args(
    data_dir: Path, output_dir: Path, *options: str, trainer: list[str] = TINY_TRAINING
) -> list[str]:
    return ["train", "--data-dir", str(data_dir), "--output-dir", str(output_dir), *options, "--", *trainer]


def exit_status(returncode: int) -> int:
    """As a shell reports it: a process ended by signal N is 128 + N (Popen says -N)."""
    return 128 - returncode if returncode < 0 else returncode


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def assert_one_line_error(result: subprocess.CompletedProcess) -> None:
    """The house rule for an expected failure: its stderr ends in one `error:` line, and no traceback."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:"), output[-3000:]


def interrupt(process: subprocess.Popen, signum: int, timeout: float = 60) -> tuple[int, str]:
    """Send signum to a background invoke; returns its exit status (shell convention) and stderr."""
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=timeout)
    return exit_status(process.returncode), stderr

"""Helpers for the fault-injection suite, in a module of its own: both suites' conftests are `conftest`."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tfdock_host import run


def _load_engine_conftest():
    """tests/engine/conftest.py under its own module name, for its fixtures and helpers."""
    path = Path(__file__).resolve().parents[1] / "engine" / "conftest.py"
    spec = importlib.util.spec_from_file_location("tfdock_engine_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ENGINE = _load_engine_conftest()
ROOT = ENGINE.ROOT
invoke = ENGINE.invoke
# Small enough to keep a run to seconds on two shared cores, big enough for a few steps per epoch.
TINY_TRAINING = ["--limit-train", "1000", "--limit-test", "200"]


def start_invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`invoke ARGS` in the background, stdin closed (as under nohup or CI), output captured as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def train_args(
    data_dir: Path, output_dir: Path, *options: str, trainer: list[str] = TINY_TRAINING
) -> list[str]:
    return ["train", "--data-dir", str(data_dir), "--output-dir", str(output_dir), *options, "--", *trainer]


def containers_mounting(client, host_dir: Path) -> list:
    """The project's containers with host_dir bind-mounted: this test's, while other runs share the engine."""
    containers = client.containers.list(all=True, filters={"label": f"{run.PROJECT_LABEL}=tfdock"})
    return [
        container
        for container in containers
        if any(mount.get("Source") == str(host_dir) for mount in container.attrs.get("Mounts", []))
    ]


def wait_for(condition, what: str, timeout: float = 120, process: subprocess.Popen | None = None):
    """Poll until condition() is truthy and return it; fail early if the process it waits on has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if process is not None and process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(f"exited with {process.returncode} before {what}: {stderr[-2000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


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

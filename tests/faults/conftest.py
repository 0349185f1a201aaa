"""Fixtures for the fault-injection suite: the engine suite's fixtures, a seeded source of random moments,
and a tally of what was injected, printed at the end of the session.

Run it on the host like the engine suite: `PYTHONPATH=src pytest tests/faults`.
"""

from __future__ import annotations

import dataclasses
import os
import random

import pytest
from faultlib import ENGINE

SEED = os.environ.get("TFDOCK_FAULT_SEED", "7")

# Shared with the engine suite, not copied; pytest registers the fixtures it finds in this module.
project_settings = ENGINE.project_settings
client = ENGINE.client
runtime_image = ENGINE.runtime_image
dev_image = ENGINE.dev_image
fashion_mnist = ENGINE.fashion_mnist
scratch = ENGINE.scratch
# Collected together with tests/engine, pytest keeps one module named `conftest` (the last one loaded), and
# the engine suite imports these from it.
ROOT = ENGINE.ROOT
invoke = ENGINE.invoke
project_containers = ENGINE.project_containers


@dataclasses.dataclass
class FaultTally:
    """What the suite did, printed at the end of the session."""

    faults_injected: int = 0
    runs_resumed: int = 0
    containers_left: int = 0
    bad_inputs: dict[str, int] = dataclasses.field(default_factory=dict)


TALLY = pytest.StashKey[FaultTally]()


@pytest.fixture(scope="session")
def tally(request) -> FaultTally:
    return request.config.stash.setdefault(TALLY, FaultTally())


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    counts = config.stash.get(TALLY, None)
    if counts is None:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fault injection")
    write(f"faults injected: {counts.faults_injected}")
    write(f"runs resumed: {counts.runs_resumed}")
    write(f"containers left behind: {counts.containers_left}")
    write(f"bad inputs tried: {len(counts.bad_inputs)}")
    for case, exit_code in counts.bad_inputs.items():
        write(f"  exit {exit_code:>3}  {case}")


@pytest.fixture(scope="session")
def rng() -> random.Random:
    """One seeded source for every random moment (TFDOCK_FAULT_SEED), so a failure can be replayed."""
    print(f"fault seed {SEED}")
    return random.Random(SEED)

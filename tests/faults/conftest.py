"""Fixtures for the fault-injection suite: the engine suite's fixtures (with each test's seeded source of
random moments), and a tally of what was injected, printed at the end of the session.

Run it on the host like the engine suite: `PYTHONPATH=src pytest tests/faults`.
"""

from __future__ import annotations

import dataclasses

import pytest
from faultlib import enginelib  # faultlib puts the engine suite's enginelib on the path


def pytest_configure(config: pytest.Config) -> None:
    enginelib.register(config)


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

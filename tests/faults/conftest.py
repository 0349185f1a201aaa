"""Fixtures for the fault-injection suite: the engine suite's fixtures (with each test's seeded source of
random moments), and a tally of what was injected, printed at the end of the session.

Run it on the host like the engine suite: `PYTHONPATH=src pytest tests/faults`.
"""

from __future__ import annotations

import dataclasses

import pytest
from faultlib import ENGINE

# Shared with the engine suite, not copied; pytest registers the fixtures it finds in this module.
project_settings = ENGINE.project_settings
client = ENGINE.client
runtime_image = ENGINE.runtime_image
dev_image = ENGINE.dev_image
fashion_mnist = ENGINE.fashion_mnist
scratch = ENGINE.scratch
rng = ENGINE.rng  # each test's own, seeded from TFDOCK_FAULT_SEED and its id
# Collected together with tests/engine, pytest keeps one module named `conftest` (the last one loaded), and
# the engine suite imports these from it.
ROOT = ENGINE.ROOT
invoke = ENGINE.invoke
project_containers = ENGINE.project_containers
containers_mounting = ENGINE.containers_mounting
STEP_DELAY_S = ENGINE.STEP_DELAY_S
limit_train = ENGINE.limit_train
steps_per_epoch = ENGINE.steps_per_epoch
step_delay_for = ENGINE.step_delay_for
wait_until_it_reaches_the_engine = ENGINE.wait_until_it_reaches_the_engine
wait_for = ENGINE.wait_for
containers_created = ENGINE.containers_created
still_there = ENGINE.still_there
project_networks = ENGINE.project_networks
free_port = ENGINE.free_port
start_invoke = ENGINE.start_invoke


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

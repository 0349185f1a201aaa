"""What the real-engine suite and the fault suite share: `invoke` run as a user would, waits on what the
engine does, the pacing of tests that act "while it trains", and the fixtures (the engine, the project's
images, the real data). Tests import the helpers from here; each suite's conftest.py calls `register`.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tfdock_host import engine, image, run, settings, spec

ROOT = settings.ROOT
# A container path starting a path of its own in a message (host paths may end in .../outputs).
CONTAINER_PATH = re.compile(rf"(?<![\w./-])(?:{spec.OUTPUT_DIR}|{spec.DATA_DIR})\b")
SEED = os.environ.get("TFDOCK_FAULT_SEED", "7")


def register(config: pytest.Config) -> None:
    """Makes this module a plugin of the session, so that its fixtures serve every test (once: the engine
    and fault suites' conftests both call this, and may be collected together), and restores Ctrl-C.

    A suite started in the background of a script (`cmd &` without job control) inherits SIGINT ignored,
    and so would every task it starts: Python then installs no Ctrl-C handler and the tests' SIGINT does
    nothing. The tasks must see SIGINT as a terminal gives it."""
    this = sys.modules[__name__]
    if not config.pluginmanager.is_registered(this):
        config.pluginmanager.register(this, "tfdock-enginelib")
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def project_settings() -> settings.Settings:
    return settings.load()


@pytest.fixture(scope="session")
def client():
    return engine.connect()


@pytest.fixture(scope="session")
def runtime_image(project_settings) -> str:
    return image.ensure(project_settings, project_settings.variant, "runtime")


@pytest.fixture(scope="session")
def dev_image(project_settings) -> str:
    return image.ensure(project_settings, project_settings.variant, "dev")


@pytest.fixture(scope="session")
def fashion_mnist(project_settings) -> Path:
    directory = Path(project_settings.fashion_mnist_dir)
    if not (directory / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"real Fashion-MNIST is missing from {directory}: apt-get install dataset-fashion-mnist")
    return directory


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A temp dir every user can traverse: pytest's tmp_path is 0700 and root's, and invoked as root the
    containers run as the image's user, who must read the data dirs made here."""
    path = Path(tempfile.mkdtemp(prefix="tfdock-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def rng(request) -> random.Random:
    """This test's own source of random moments, seeded from TFDOCK_FAULT_SEED and the test's id: its draws
    do not depend on which tests ran before it or on -k, so the printed seed replays it alone."""
    print(f"fault seed {SEED} for {request.node.nodeid} (replay: TFDOCK_FAULT_SEED={SEED})")
    return random.Random(f"{SEED}:{request.node.nodeid}")


def invoke(*args: str, env: dict[str, str] | None = None, timeout: float = 900, user: str = ""):
    """`invoke ARGS` from the project root, as the shell would run it (optionally as another user)."""
    command = [sys.executable, "-m", "invoke", *args]
    if user:
        command = ["runuser", "-u", user, "--", *command]
    return subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_invoke(
    *args: str,
    env: dict[str, str] | None = None,
    stdout: int = subprocess.PIPE,
    stderr: int = subprocess.PIPE,
) -> subprocess.Popen:
    """`invoke ARGS` in the background, stdin closed (as under nohup or CI), output captured as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        text=True,
    )


def free_port() -> int:
    """A TCP port free on the host's loopback now (the engine publishes there)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def project_containers(client, task: str = "") -> list:
    labels = [f"{run.PROJECT_LABEL}=tfdock", *([f"{run.TASK_LABEL}={task}"] if task else [])]
    return client.containers.list(all=True, filters={"label": labels})


@contextlib.contextmanager
def containers_created(client, task: str) -> Iterator[list[str]]:
    """The names of the project's `task` containers the engine made while the block ran (from its event
    log): a test's own, without counting those other runs of the project have at that time."""
    created: list[str] = []
    since = time.time()
    yield created
    labels = [f"{run.PROJECT_LABEL}=tfdock", f"{run.TASK_LABEL}={task}"]
    filters = {"type": "container", "event": "create", "label": labels}
    events = client.events(since=since, until=time.time(), filters=filters, decode=True)
    created += [event["Actor"]["Attributes"]["name"] for event in events]


def still_there(client, names, timeout: float = 60, kind: str = "containers") -> list[str]:
    """Those of names (containers, or networks with kind="networks") the engine still has after a bounded
    wait: a leak stays, while one another run of the project made in the same seconds goes when it ends."""
    from docker.errors import NotFound

    def present() -> list[str]:
        found = []
        for name in names:
            with contextlib.suppress(NotFound):
                found.append(getattr(client, kind).get(name).name)
        return found

    deadline = time.monotonic() + timeout
    while (found := present()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return found


def project_networks(client) -> set[str]:
    return {
        network.name for network in client.networks.list(filters={"label": f"{run.PROJECT_LABEL}=tfdock"})
    }


def containers_mounting(client, host_dir: Path, status: str = "") -> list:
    """The project's containers with host_dir bind-mounted: one test's own, while other runs share the
    engine (every task mounts its output or reports dir)."""
    filters = {"label": f"{run.PROJECT_LABEL}=tfdock", **({"status": status} if status else {})}
    return [
        container
        for container in client.containers.list(all=True, filters=filters)
        if any(mount.get("Source") == str(host_dir) for mount in container.attrs.get("Mounts", []))
    ]


def wait_for(
    condition, what: str, timeout: float = 600, process: subprocess.Popen | None = None, every: float = 0.2
):
    """Poll until condition() is truthy and return it; fail early if the process it waits on has ended.
    The timeout only bounds a hang: it is sized for a loaded machine, not for this one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if process is not None and process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(f"exited with {process.returncode} before {what}: {(stderr or '')[-2000:]}")
        time.sleep(every)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def wait_until_it_reaches_the_engine(process: subprocess.Popen, timeout: float = 600) -> None:
    """Until a background invoke has a socket open: its task's body connects to the engine after invoke's
    own start-up (a Ctrl-C there exits 1, by invoke's rule) and before it makes a container."""
    fds = Path(f"/proc/{process.pid}/fd")
    deadline = time.monotonic() + timeout
    while not _has_a_socket(fds):
        if process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(f"exited with {process.returncode} before it reached the engine: {stderr[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no connection to the engine after {timeout} s")
        time.sleep(0.001)


def _has_a_socket(fds: Path) -> bool:
    with contextlib.suppress(OSError):  # an fd closed while we looked, or the process ended
        return any(os.readlink(fd).startswith("socket:") for fd in fds.iterdir())
    return False


# A test that picks a moment "while it trains" sets this many steps of work after the moment, each followed
# by the trainer's --step-delay (FOR TESTS ONLY): the work then lasts at least steps x delay on any machine.
STEP_DELAY_S = 0.1
# TFDOCK_TEST_LIMIT_TRAIN shrinks the training subsets of the tests that allow it (the speed-independence
# check in docs/reliability.md); their moments and windows are counted in steps, so they hold either way.
LIMIT_TRAIN = os.environ.get("TFDOCK_TEST_LIMIT_TRAIN", "")


def limit_train(default: int) -> int:
    return int(LIMIT_TRAIN) if LIMIT_TRAIN else default


def step_delay_for(seconds: float, steps: int) -> float:
    """The --step-delay that makes `steps` steps last at least `seconds`, on any machine (and for any
    TFDOCK_TEST_LIMIT_TRAIN): for a test whose moment is seen by polling, then acted on through the engine."""
    return max(STEP_DELAY_S, seconds / max(steps, 1))


def steps_per_epoch(limit: int, batch_size: int = 128, validation_split: float = 0.1) -> int:
    """Steps per epoch at --limit-train: the trainer holds out validation_split, drops a last part batch."""
    return (limit - round(limit * validation_split)) // batch_size

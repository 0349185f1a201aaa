"""tfdock sessions. `nox` runs the default ones (what CI runs); `nox -l` lists them all.

`tests` and `lint` run inside the dev image (built first when missing or stale); `host` and `engine` run
on the host. Arguments after `--` replace a session's defaults: `nox -s tests -- -k data`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import nox

# As in tasks.py: the host package is not installed, so a clone (or copier project) runs its own copy.
sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from tfdock_host import settings as project_settings
from tfdock_host import suites
from tfdock_host.errors import TfdockError

# nox logs at DEBUG; the docker SDK's HTTP requests are not news.
logging.getLogger("urllib3").setLevel(logging.WARNING)
# A project made with `copier copy` carries only its own suites: the tool's (host, engine, faults) are
# tfdock's, which its CI runs.
ROOT = Path(__file__).resolve().parent
SUITE_DIRS = {
    "lint": "",
    "host": "host",
    "tests": "container",
    "engine": "engine",
    "arm64": "engine",
    "faults": "faults",
    "template": "template",
}
nox.options.sessions = [name for name, suite in SUITE_DIRS.items() if (ROOT / "tests" / suite).is_dir()]
nox.options.error_on_missing_interpreters = True
HOST_REQUIREMENTS = ["--require-hashes", "-r", "requirements/host.txt", "-r", "requirements/host-test.txt"]


def in_container(session: nox.Session, suite) -> None:
    """Run a suite of src/tfdock_host/suites.py (which holds its default arguments) in the dev image."""
    try:
        exit_code = suite(project_settings.load(), session.posargs)
    except TfdockError as error:
        session.error(str(error))
    if exit_code:
        session.error(f"{suite.__name__} exited with {exit_code}")


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The container test suite (TensorFlow), run inside the dev image with src/ bind-mounted."""
    in_container(session, suites.container_tests)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff, ruff format --check, mypy and hadolint, run inside the dev image."""
    in_container(session, suites.lint)


@nox.session
def host(session: nox.Session) -> None:
    """The host package's own tests: no TensorFlow, no engine."""
    on_the_host(session, "host")


def on_the_host(
    session: nox.Session, suite: str, defaults: tuple[str, ...] = ("-q", "--durations=10")
) -> None:
    session.install(*HOST_REQUIREMENTS)
    session.run(
        "pytest",
        f"tests/{suite}",
        f"--junitxml=reports/junit-{suite}.xml",
        *(session.posargs or defaults),
        env={"PYTHONPATH": "src"},
    )


@nox.session
def engine(session: nox.Session) -> None:
    """End to end on the real Docker engine: builds, labels, training, GPU requests, IDE clients."""
    on_the_host(session, "engine", defaults=("-q", "--durations=10", "-m", "not arm64"))


@nox.session
def arm64(session: nox.Session) -> None:
    """The engine suite's linux/arm64 tests under emulation (qemu: `bash .ci/provision-arm64` sets it up)."""
    on_the_host(session, "engine", defaults=("-m", "arm64", "-q", "-s"))


@nox.session
def faults(session: nox.Session) -> None:
    """Fault injection on the real engine (as root; stops the daemon once): kills, signals, disk, input."""
    on_the_host(session, "faults")


@nox.session
def template(session: nox.Session) -> None:
    """tfdock as a copier template: projects generated and updated with copier, then (on the real engine)
    a generated project's README commands and an entry point of its own through train, workers, debug, k8s."""
    on_the_host(session, "template")


@nox.session(venv_backend="none", default=False)
def bench(session: nox.Session) -> None:
    """Every benchmark, each figure next to its reference (arguments: --quick, or benchmark names)."""
    from tfdock_host import bench as benchmarks

    quick = "--quick" in session.posargs
    only = [arg for arg in session.posargs if arg != "--quick"]
    if benchmarks.run(project_settings.load(), quick, only):
        session.error("a benchmark failed")

"""The in-container suites (tests, lint): one implementation behind both `nox -s ...` and `invoke ...`.

Both run in the dev image with the project bind-mounted read-only at /workspace (no rebuild for code
changes) and only reports/ writable, as the invoking user, without network.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from tfdock_host import console, image
from tfdock_host.run import DEBUG_PORT, WORKSPACE, Mount, execute, host_dir, task_spec
from tfdock_host.settings import ROOT, Settings

TEST_DATASETS = "/datasets"  # each declared dataset's test_dir, when present, at /datasets/<name>
REPORTS = "/reports"  # the host's reports dir (anywhere: invoke.yaml's reports_dir) in the container


def whole_suite_args(package: str) -> list[str]:
    return [
        "--durations=10",
        f"--cov={package}", f"--cov-report=xml:{REPORTS}/coverage-container.xml", "--cov-report=term",
    ]  # fmt: skip


def test_data_variable(dataset: str) -> str:
    """The variable naming a dataset's real data in the container: TFDOCK_<NAME>_DIR."""
    return "TFDOCK_" + "".join(char if char.isalnum() else "_" for char in dataset).upper() + "_DIR"


def container_tests(settings: Settings, pytest_args: list[str], debug: bool = False) -> int:
    """pytest over tests/container inside the dev image; junit XML (and, for the whole suite, coverage)
    land in reports/. Arguments select tests: then coverage, which would slow the edit-test loop and
    mean little for a slice, is left out."""
    reports = settings.host_path(settings.reports_dir)
    command = [
        "python", "-m", "pytest",
        "-p", "no:cacheprovider",
        "-o", "testpaths=tests/container",
        "-o", "junit_suite_name=container",
        "-o", "junit_family=xunit1",  # keeps record_property's per-test properties (where the suite ran)
        "--junitxml", f"{REPORTS}/junit-container.xml",
        *(pytest_args or whole_suite_args(settings.contract.package)),
    ]  # fmt: skip
    environment = {"COVERAGE_FILE": f"{REPORTS}/.coverage-container"}
    if debug:
        console.info(f"debugpy waits for your IDE on 127.0.0.1:{DEBUG_PORT} (see docs/ide.md)")
    writable = Mount(host_dir(reports), REPORTS, read_only=False)
    return _run_in_dev_image(settings, "test", command, writable, environment, debug)


def run_script_in_dev_image(settings: Settings, task: str, script_args: list[str], writable: Path) -> int:
    """`python SCRIPT ARGS` of the project (a benchmark) in the dev image; `writable`, a dir of the
    project, takes its output."""
    output = Mount(
        host_dir(writable), f"{WORKSPACE}/{writable.relative_to(ROOT).as_posix()}", read_only=False
    )
    return _run_in_dev_image(settings, task, ["python", *script_args], output, {})


def lint(settings: Settings, paths: list[str]) -> int:
    """ruff check, ruff format --check, mypy and hadolint; all run, and any failure fails the suite."""
    paths = paths or ["."]
    checks = [
        ["ruff", "check", *paths],
        ["ruff", "format", "--check", *paths],
        ["mypy"],
        ["hadolint", "docker/Dockerfile"],
    ]
    script = "status=0\n" + "".join(
        f"echo '--- {shlex.join(check)}'; {shlex.join(check)} || status=1\n" for check in checks
    )
    environment = {"RUFF_CACHE_DIR": "/tmp/home/.cache/ruff", "MYPY_CACHE_DIR": "/tmp/home/.cache/mypy"}
    return _run_in_dev_image(settings, "lint", ["sh", "-c", script + "exit $status"], None, environment)


def _run_in_dev_image(
    settings: Settings,
    task: str,
    command: list[str],
    writable: Mount | None,
    environment: dict[str, str],
    debug: bool = False,
) -> int:
    """The project read-only at /workspace, one writable mount, and the datasets' real data when present."""
    mounts = [writable] if writable else []
    if os.environ.get("CI"):  # in CI, the container suite fails where real data is missing, not skips
        environment = {**environment, "CI": os.environ["CI"]}
    for dataset in settings.contract.datasets.values():
        real_data = Path(dataset.test_dir) if dataset.test_dir else None
        if real_data and real_data.is_dir() and not dataset.missing(real_data):
            inside = f"{TEST_DATASETS}/{dataset.name}"
            mounts.append(Mount(real_data, inside))
            environment = {**environment, test_data_variable(dataset.name): inside}
    tag = image.ensure(settings, settings.variant, "dev")
    spec = task_spec(
        task,
        tag,
        command,
        extra_mounts=tuple(mounts),
        environment=environment,
        shm_size=settings.shm_size,
        debug=debug,
    )
    return execute(spec)

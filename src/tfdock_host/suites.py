"""The in-container suites (tests, lint): one implementation behind both `nox -s ...` and `invoke ...`.

Both run in the dev image with the project bind-mounted read-only at /workspace (no rebuild for code
changes) and only reports/ writable, as the invoking user, without network.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from tfdock_host import console, image
from tfdock_host.run import DEBUG_PORT, WORKSPACE, Mount, execute, host_dir, task_spec
from tfdock_host.settings import ROOT, Settings
from tfdock_host.training import validated_shm_size

REAL_DATA_IN_CONTAINER = "/datasets/fashion-mnist"
REPORTS = "/reports"  # the host's reports dir (anywhere: invoke.yaml's reports_dir) in the container
WHOLE_SUITE_ARGS = [
    "--durations=10",
    "--cov=tfdock", f"--cov-report=xml:{REPORTS}/coverage-container.xml", "--cov-report=term",
]  # fmt: skip


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
        *(pytest_args or WHOLE_SUITE_ARGS),
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
    """The project read-only at /workspace, one writable mount, and real Fashion-MNIST when present."""
    mounts = [writable] if writable else []
    real_data = _real_fashion_mnist(settings)
    if real_data:
        mounts.append(Mount(real_data, REAL_DATA_IN_CONTAINER))
        environment = {**environment, "TFDOCK_FASHION_MNIST_DIR": REAL_DATA_IN_CONTAINER}
    tag = image.ensure(settings, settings.variant, "dev")
    spec = task_spec(
        task,
        tag,
        command,
        extra_mounts=tuple(mounts),
        environment=environment,
        shm_size=validated_shm_size(settings.shm_size),
        debug=debug,
    )
    return execute(spec)


def _real_fashion_mnist(settings: Settings) -> Path | None:
    directory = Path(settings.fashion_mnist_dir)
    return directory if (directory / "train-images-idx3-ubyte.gz").is_file() else None

"""`invoke doctor` end to end on the real engine: the table, the exit code, no traceback when unreachable."""

from __future__ import annotations

import re

import pytest
from enginelib import containers_created, invoke, still_there

from tfdock_host import doctor, engine

pytestmark = pytest.mark.engine

# Wide enough that no detail or fix is folded over lines.
WIDE = {"COLUMNS": "400"}


def run_doctor(*args: str, env: dict[str, str] | None = None):
    return invoke("doctor", *args, env={**WIDE, **(env or {})}, timeout=600)


def status_of(output: str, name: str) -> str:
    """A check's status: the cell after its name on the row's first line (box drawing or ASCII). The engine
    row's name goes on with the engine's kind once it answers ("engine: rootful Docker")."""
    kind = r"(?:: [^│|]*?)?" if name == doctor.ENGINE else ""
    row = re.search(rf"^\W*{re.escape(name)}{kind}\s*[│|]\s*(\S+)", output, re.M)
    assert row, f"no {name!r} row in:\n{output}"
    return row.group(1)


def test_doctor_prints_every_check_and_a_cpu_only_engine_only_warns_about_gpus(client):
    with containers_created(client, "doctor") as created:
        result = run_doctor()
    # Warnings do not fail. The disk row reads the machine's free space, not the code: a short disk may fail.
    short_of_disk = status_of(result.stdout, doctor.DISK) == doctor.FAIL
    assert result.returncode == int(short_of_disk), result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    for name in (doctor.ENGINE, doctor.SOCKET, doctor.BUILDKIT, doctor.SHM, *doctor.ENGINE_CHECKS):
        assert name in result.stdout
    assert status_of(result.stdout, doctor.ENGINE) == doctor.OK
    assert f"{doctor.engine_row(engine.current().kind)} " in result.stdout
    for name in (doctor.NVIDIA_RUNTIME, doctor.GPUS_IN_CONTAINER, doctor.TENSORFLOW_GPUS):
        assert status_of(result.stdout, name) in (doctor.OK, doctor.WARN)
    assert created, "doctor ran no container: its in-container checks did not run"
    assert still_there(client, created) == []


def test_wanting_gpus_on_a_cpu_only_engine_fails_with_the_toolkit_fix(client):
    with containers_created(client, "doctor") as created:
        result = run_doctor("--gpus", "all")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    gpu_statuses = {
        status_of(result.stdout, name) for name in (doctor.NVIDIA_RUNTIME, doctor.GPUS_IN_CONTAINER)
    }
    assert doctor.FAIL in gpu_statuses
    assert "NVIDIA Container Toolkit" in result.stdout
    assert still_there(client, created) == []


@pytest.mark.gpu_standin
def test_the_ci_standin_hook_takes_gpu_requests_but_injects_no_gpu():
    result = run_doctor("--gpus", "all")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]  # a failed check
    assert status_of(result.stdout, doctor.NVIDIA_RUNTIME) == doctor.OK
    assert status_of(result.stdout, doctor.GPUS_IN_CONTAINER) == doctor.FAIL
    assert "nvidia-smi not found in the container: the NVIDIA hook injected nothing" in result.stdout


def test_an_unreachable_daemon_is_a_failed_check_with_a_fix_not_a_traceback():
    result = run_doctor(env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert status_of(result.stdout, doctor.ENGINE) == doctor.FAIL
    assert "sudo systemctl start docker" in result.stdout
    for name in doctor.ENGINE_CHECKS:
        assert status_of(result.stdout, name) == doctor.SKIP
    assert "needs the engine" in result.stdout

"""`invoke doctor`'s decisions, on plain values and fake probe results: no engine needed."""

import json
import socket

import pytest

from tfdock_host import doctor, engine
from tfdock_host.doctor import FAIL, OK, SKIP, WARN, Check, ProbeResult
from tfdock_host.errors import EngineError
from tfdock_host.settings import Settings

GIB = 1024**3
NO_RUNTIME_REFUSAL = 'could not select device driver "" with capabilities: [[gpu]]'
STANDIN_REFUSAL = (
    "OCI runtime create failed: runc create failed: unable to start container process: "
    'exec: "nvidia-smi": executable file not found in $PATH: unknown'
)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [((OK, OK), 0), ((OK, WARN, SKIP), 0), ((OK, FAIL), 1), ((WARN, FAIL, SKIP), 1), ((), 0)],
)
def test_exit_code_is_1_only_when_a_check_fails(statuses, expected):
    assert (
        doctor.exit_code([Check(f"check {i}", status, "detail") for i, status in enumerate(statuses)])
        == expected
    )


def test_the_table_shows_every_check_and_the_fix_only_for_those_not_ok(capsys):
    doctor.render(
        [
            Check("healthy", OK, "fine", "never shown"),
            Check("broken", FAIL, "needs [[gpu]]", "run fix-it"),
            Check("meh", WARN, "so-so", "run tweak"),
        ]
    )
    out = capsys.readouterr().out
    assert "healthy" in out and "broken" in out and "meh" in out
    assert "run fix-it" in out and "run tweak" in out
    assert "never shown" not in out
    assert "[[gpu]]" in out, "engine messages are text, not rich markup"
    assert "1 ok, 1 warn, 1 FAIL" in out


@pytest.mark.parametrize(
    ("gpus_spec", "configured", "wanted"),
    [
        ("", "none", False),
        ("all", "none", True),
        ("", "all", True),
        ("none", "all", False),
        ("device=0", "", True),
    ],
)
def test_gpus_are_wanted_as_train_reads_the_option_and_the_setting(gpus_spec, configured, wanted):
    assert doctor.gpus_wanted(gpus_spec, configured) is wanted


def test_a_failed_gpu_check_only_warns_when_no_gpu_is_wanted():
    failed = doctor.gpus_in_container_check(ProbeResult(refusal=STANDIN_REFUSAL))
    assert failed.status == FAIL

    relaxed = doctor.gpu_verdict(failed, wanted=False)
    assert relaxed.status == WARN
    assert relaxed.detail.startswith(doctor.NO_GPU_WANTED) and failed.detail in relaxed.detail
    assert doctor.gpu_verdict(failed, wanted=True) == failed
    passed = Check(doctor.GPUS_IN_CONTAINER, OK, "GPU 0: A100")
    assert doctor.gpu_verdict(passed, wanted=False) == passed


def test_the_ci_standin_hook_is_a_runtime_but_gives_no_gpu():
    probe = ProbeResult(refusal=STANDIN_REFUSAL)
    assert doctor.nvidia_runtime_check({"runc": {}}, probe).status == OK
    check = doctor.gpus_in_container_check(probe)
    assert check.status == FAIL
    assert check.detail == "nvidia-smi not found in the container: the NVIDIA hook injected nothing"
    assert "NVIDIA Container Toolkit" in check.fix


def test_an_engine_without_the_nvidia_runtime_fails_with_the_toolkit_fix():
    probe = ProbeResult(refusal=f"Error response from daemon: {NO_RUNTIME_REFUSAL}")
    runtime = doctor.nvidia_runtime_check({"runc": {}}, probe)
    assert runtime.status == FAIL
    assert "nvidia-ctk runtime configure --runtime=docker" in runtime.fix and "--gpus none" in runtime.fix
    assert doctor.gpus_in_container_check(probe).status == SKIP


def test_a_registered_runtime_and_listed_gpus_pass():
    listing = "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-1234)\nGPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-5678)\n"
    probe = ProbeResult(exit_code=0, stdout=listing)
    assert doctor.nvidia_runtime_check({"nvidia": {}, "runc": {}}, probe).status == OK
    check = doctor.gpus_in_container_check(probe)
    assert check.status == OK
    assert check.detail == "GPU 0: NVIDIA A100-SXM4-40GB; GPU 1: NVIDIA A100-SXM4-40GB"


def _tensorflow_probe(gpus: list[dict], profiling: str | None = "open", stderr: str = "") -> ProbeResult:
    report = {
        "tensorflow": "2.21.0",
        "cuda": "12.5.1",
        "cudnn": "9",
        "targets": ["sm_60", "sm_70", "sm_80", "sm_89", "sm_90", "compute_90"],
        "gpus": gpus,
        "profiling": profiling,
    }
    return ProbeResult(exit_code=0, stdout=json.dumps(report) + "\n", stderr=stderr)


def _gpu(name: str, capability: list[int], conv: str = "ok", xla: str = "ok") -> dict:
    return {"name": name, "compute_capability": capability, "conv": conv, "xla": xla}


A100 = _gpu("NVIDIA A100-SXM4-40GB", [8, 0])
NO_GPU_LIBRARIES = "W tensorflow/core/common_runtime/gpu/gpu_device.cc] Cannot dlopen some GPU libraries."


@pytest.mark.parametrize(
    ("probe", "status", "detail"),
    [
        (_tensorflow_probe([A100, A100]), OK, "GPU 1 NVIDIA A100-SXM4-40GB (8.0: sm_80 kernels): conv ok"),
        (_tensorflow_probe([A100]), OK, "TensorFlow 2.21.0 (CUDA 12.5.1, cuDNN 9, sm_60"),
        (_tensorflow_probe([], stderr=f"{NO_GPU_LIBRARIES}\n"), FAIL, f"sees no GPU: {NO_GPU_LIBRARIES}"),
        (_tensorflow_probe([_gpu("NVIDIA GeForce RTX 5090", [12, 0], conv="CUDA_ERROR_INVALID_PTX")]), FAIL,
         "12.0 (Blackwell or later)"),
        (_tensorflow_probe([_gpu("Tesla V100", [7, 0], xla="INTERNAL: ptxas exited with an error")]), FAIL,
         "XLA INTERNAL: ptxas exited"),
        (_tensorflow_probe([A100], profiling="admin-only"), WARN, "GPU profiling is for admins only"),
        (ProbeResult(exit_code=0, stdout="2\n"), FAIL, "failed (exit 0)"),
        (ProbeResult(exit_code=1, stderr="ImportError: libcuda.so.1\n"), FAIL, "ImportError: libcuda.so.1"),
        (ProbeResult(refusal="no result within 180 s"), FAIL, "no result within 180 s"),
        (None, SKIP, "tfdock:latest-gpu is not built"),
    ],
)  # fmt: skip
def test_tensorflow_gpu_check(probe, status, detail):
    check = doctor.tensorflow_check("tfdock:latest-gpu", probe)
    assert check.status == status and detail in check.detail, check
    assert check.status == OK or check.fix


def test_the_fixes_say_what_each_problem_needs():
    blackwell = _tensorflow_probe([_gpu("NVIDIA B200", [10, 0], conv="CUDA_ERROR_INVALID_PTX")], "admin-only")
    check = doctor.tensorflow_check("tfdock:latest-gpu", blackwell)
    assert "needs another base" in check.fix and "NVreg_RestrictProfilingToAdminUsers=0" in check.fix


@pytest.mark.parametrize(
    ("size", "status"),
    [
        ("2g", OK),
        ("1g", OK),
        ("1073741824", OK),
        ("1024m", OK),
        ("512m", WARN),
        ("64m", WARN),
        ("lots", FAIL),
    ],
)
def test_shm_size_warns_below_1g_and_fails_when_invalid(size, status):
    check = doctor.shm_check(size)
    assert check.status == status
    assert check.status == OK or "INVOKE_TFDOCK_SHM_SIZE" in check.fix


@pytest.mark.parametrize(
    ("free_bytes", "status"),
    [
        (100 * GIB, OK),
        (20 * GIB, OK),
        (20 * GIB - 1, WARN),
        (10 * GIB, WARN),
        (10 * GIB - 1, FAIL),
        (0, FAIL),
    ],
)
def test_disk_fails_below_10_gib_and_warns_below_20_gib(free_bytes, status):
    check = doctor.disk_check("in /var/lib/docker", free_bytes)
    assert check.status == status
    assert check.status == OK or "docker builder prune" in check.fix


@pytest.mark.parametrize(("state", "status"), [("fresh", OK), ("stale", WARN), ("missing", WARN)])
def test_a_missing_or_stale_image_only_warns_with_the_build_command(state, status):
    check = doctor.freshness_check("runtime", "tfdock:latest-cpu", state)
    assert check.status == status
    assert check.fix == ("" if status == OK else "invoke build --target runtime")


@pytest.fixture
def unix_socket(tmp_path):
    path = tmp_path / "d.sock"  # short: a unix socket path has at most 107 bytes
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listening:
        listening.bind(str(path))
        yield path


def test_a_world_writable_daemon_socket_fails(unix_socket):
    unix_socket.chmod(0o666)
    check = doctor.socket_permissions_check(f"unix://{unix_socket}")
    assert check.status == FAIL
    assert "anyone on this host can become root through it" in check.detail
    assert f"sudo chmod 660 {unix_socket}" in check.fix and "SocketMode" in check.fix


def test_a_group_only_daemon_socket_passes(unix_socket):
    unix_socket.chmod(0o660)
    check = doctor.socket_permissions_check(f"unix://{unix_socket}")
    assert check.status == OK and "srw-rw----" in check.detail


def test_socket_path_follows_docker_host():
    assert doctor.socket_path("") == doctor.DEFAULT_SOCKET
    assert str(doctor.socket_path("unix:///run/user/1000/docker.sock")) == "/run/user/1000/docker.sock"
    assert doctor.socket_path("tcp://10.0.0.1:2376") is None
    assert doctor.socket_permissions_check("ssh://builder").status == SKIP


def test_an_unreachable_daemon_fails_once_and_skips_what_needs_it(monkeypatch):
    def unreachable():
        raise EngineError("cannot reach the Docker daemon at unix:///nowhere.sock", engine.START_DAEMON_HINT)

    monkeypatch.setattr(engine, "connect", unreachable)
    monkeypatch.setattr(engine, "buildkit_cli", lambda preferred: "/usr/bin/docker")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nowhere.sock")

    checks = {check.name: check for check in doctor.run_checks(Settings(), "all")}

    assert checks[doctor.DAEMON].status == FAIL and checks[doctor.DAEMON].fix == engine.START_DAEMON_HINT
    for name in doctor.ENGINE_CHECKS:
        assert (checks[name].status, checks[name].detail) == (SKIP, "needs the daemon")
    assert doctor.exit_code(list(checks.values())) == 1

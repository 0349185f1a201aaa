"""`invoke doctor`'s decisions, on plain values and fake probe results: no engine needed."""

import json
import socket

import pytest

from tfdock_host import doctor, engine, gpu_compat
from tfdock_host.doctor import FAIL, OK, SKIP, WARN, Check, ProbeResult
from tfdock_host.errors import EngineError
from tfdock_host.settings import ROOT, Settings

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


# nvidia-smi --query-gpu=index,name,compute_cap,driver_version --format=csv,noheader, as a real one prints it
A100_TABLE = "0, NVIDIA A100-SXM4-40GB, 8.0, 550.54.15\n1, NVIDIA A100-SXM4-40GB, 8.0, 550.54.15\n"
K80_TABLE = "0, Tesla K80, 3.7, 470.256.02\n"


def test_a_registered_runtime_and_listed_gpus_pass():
    probe = ProbeResult(exit_code=0, stdout=A100_TABLE)
    assert doctor.nvidia_runtime_check({"nvidia": {}, "runc": {}}, probe).status == OK
    check = doctor.gpus_in_container_check(probe)
    assert check.status == OK
    gpu = "NVIDIA A100-SXM4-40GB (8.0, driver 550.54.15)"
    assert check.detail == f"GPU 0: {gpu}; GPU 1: {gpu}"


def test_a_container_that_lost_its_gpus_is_named_with_nvidias_fix():
    probe = ProbeResult(exit_code=255, stdout="Failed to initialize NVML: Unknown Error\n")
    check = doctor.gpus_in_container_check(probe)
    assert check.status == FAIL
    assert (
        "Failed to initialize NVML: Unknown Error" in check.detail
        and "systemctl daemon-reload" in check.detail
    )
    assert (
        "nvidia-ctk system create-dev-char-symlinks --create-all" in check.fix and "invoke clean" in check.fix
    )
    assert doctor.driver_check((), "12.9").status == SKIP


def test_a_driver_whose_nvidia_smi_knows_no_compute_cap_is_too_old():
    probe = ProbeResult(exit_code=2, stdout='Field "compute_cap" is not a valid field to query.\n')
    check = doctor.gpus_in_container_check(probe)
    assert check.status == FAIL and "cannot report compute_cap" in check.detail
    assert "525.60.13 or later" in check.fix


@pytest.mark.parametrize(
    ("table", "cuda", "status", "detail"),
    [
        (A100_TABLE, "12.9", OK, "driver 550.54.15 runs CUDA 12.9 (>= 525.60.13)"),
        ("0, Tesla T4, 7.5, 525.60.13\n", "12.9", OK, "driver 525.60.13 runs CUDA 12.9"),
        ("0, Tesla T4, 7.5, 525.60.11\n", "12.9", FAIL, "525.60.11 is older than 525.60.13"),
        (K80_TABLE, "12.9", FAIL, "470.256.02 is older than 525.60.13, the oldest that runs CUDA 12.x"),
        (K80_TABLE, "11.8", OK, "driver 470.256.02 runs CUDA 11.8 (>= 450.80.2)"),
        (A100_TABLE, None, WARN, "names no CUDA runtime wheel"),
    ],
)
def test_the_driver_against_the_images_cuda(table, cuda, status, detail):
    check = doctor.driver_check(gpu_compat.SmiGpu.parse_all(table), cuda)
    assert check.status == status and detail in check.detail, check
    assert status != FAIL or "upgrade the host's NVIDIA driver to 525.60.13" in check.fix


def test_the_engine_row_names_the_kind_of_engine():
    assert doctor.engine_row(engine.DOCKER) == "engine: rootful Docker"
    assert doctor.engine_row(engine.ROOTLESS_PODMAN) == "engine: rootless Podman"
    assert doctor.engine_row(engine.DOCKER_DESKTOP) == "engine: Docker Desktop"


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


def _cpu_build_probe(stderr: str = "") -> ProbeResult:
    report = {
        "tensorflow": "2.21.0",
        "cuda": None,
        "cudnn": None,
        "targets": [],
        "gpus": [],
        "profiling": None,
    }
    return ProbeResult(exit_code=0, stdout=json.dumps(report) + "\n", stderr=stderr)


@pytest.mark.parametrize(
    ("table", "detail", "fix"),
    [
        (K80_TABLE, "GPU 0 Tesla K80 (3.7: this TensorFlow has no kernels for it, older than its oldest",
         "the last TensorFlow with Kepler (3.5, 3.7) kernels was 2.14"),
        ("0, NVIDIA B200, 10.0, 570.124.06\n", "GPU 0 NVIDIA B200 (10.0 (Blackwell or later)",
         gpu_compat.BLACKWELL_ADVICE),
        ("0, NVIDIA GeForce RTX 5090, 12.0, 575.51.03\n", "GPU 0 NVIDIA GeForce RTX 5090 (12.0 (Blackwell",
         gpu_compat.BLACKWELL_ADVICE),
    ],
)  # fmt: skip
def test_gpus_tensorflow_did_not_see_are_judged_by_nvidia_smis_capability(table, detail, fix):
    gpus_found = gpu_compat.SmiGpu.parse_all(table)
    check = doctor.tensorflow_check("tfdock:latest-cpu", _cpu_build_probe(), gpus_found)
    assert check.status == FAIL
    assert check.detail.startswith("TensorFlow 2.21.0 (not a CUDA build) in tfdock:latest-cpu sees no GPU")
    assert detail in check.detail and "by TensorFlow 2.21.0's CUDA wheel (the gpu variant))" in check.detail
    assert fix in check.fix


def test_a_cuda_build_that_sees_no_gpu_judges_by_its_own_targets():
    ignored = "Ignoring visible gpu device (device: 0, name: Tesla K80) with Cuda compute capability 3.7."
    probe = _tensorflow_probe([], stderr=f"W0000 gpu_device.cc] {ignored}\n")
    check = doctor.tensorflow_check("tfdock:latest-gpu", probe, gpu_compat.SmiGpu.parse_all(K80_TABLE))
    assert (
        check.status == FAIL
        and ignored in check.detail
        and "3.7: this TensorFlow has no kernels" in check.detail
    )
    assert check.detail.endswith("older than its oldest target 6.0; by its own targets)")


def test_before_the_gpu_image_is_built_its_locks_tensorflow_judges_nvidia_smis_gpus():
    assert gpu_compat.lock_tensorflow((ROOT / "requirements" / "runtime-gpu.txt").read_text()) == "2.21.0"
    k80_and_h100 = gpu_compat.SmiGpu.parse_all(K80_TABLE + "1, NVIDIA H100 80GB HBM3, 9.0, 550.54.15\n")
    check = doctor.tensorflow_check("tfdock:latest-gpu", None, k80_and_h100, "2.21.0")
    assert check.status == FAIL and check.detail.startswith(
        "tfdock:latest-gpu is not built; GPU 0 Tesla K80 (3.7"
    )
    assert (
        "GPU 1 NVIDIA H100 80GB HBM3 (9.0: sm_90 kernels; by TensorFlow 2.21.0's CUDA wheel" in check.detail
    )
    assert check.fix == gpu_compat.KEPLER_ADVICE
    h100 = doctor.tensorflow_check("tfdock:latest-gpu", None, k80_and_h100[1:], "2.21.0")
    assert (h100.status, h100.fix) == (SKIP, "invoke build --target runtime --variant gpu")


def test_the_fixes_say_what_each_problem_needs():
    blackwell = _tensorflow_probe([_gpu("NVIDIA B200", [10, 0], conv="CUDA_ERROR_INVALID_PTX")], "admin-only")
    check = doctor.tensorflow_check("tfdock:latest-gpu", blackwell)
    assert "--gpus none" in check.fix and "NVreg_RestrictProfilingToAdminUsers=0" in check.fix


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
    ("variant", "free_bytes", "status"),
    [
        ("cpu", 100 * GIB, OK),
        ("cpu", 8 * GIB, OK),
        ("cpu", 8 * GIB - 1, WARN),
        ("cpu", 4 * GIB, WARN),
        ("cpu", 4 * GIB - 1, FAIL),
        ("cpu", 0, FAIL),
        ("gpu", 24 * GIB, OK),
        ("gpu", 24 * GIB - 1, WARN),
        ("gpu", 12 * GIB, WARN),
        ("gpu", 12 * GIB - 1, FAIL),
    ],
)
def test_disk_fails_below_one_build_of_the_variant_and_warns_below_two(variant, free_bytes, status):
    check = doctor.disk_check("in /var/lib/docker", free_bytes, variant)
    assert check.status == status
    assert check.status == OK or "docker builder prune" in check.fix
    assert check.status == OK or f"{variant} images" in check.detail


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

    assert checks[doctor.ENGINE].status == FAIL and checks[doctor.ENGINE].fix == engine.START_DAEMON_HINT
    for name in doctor.ENGINE_CHECKS:
        assert (checks[name].status, checks[name].detail) == (SKIP, "needs the engine")
    assert doctor.exit_code(list(checks.values())) == 1

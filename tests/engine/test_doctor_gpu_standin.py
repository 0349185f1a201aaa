"""`invoke doctor --gpus all` on the real engine with CI's GPU stand-in: CI STAND-IN, NOT A GPU.

.ci/nvidia-container-runtime-hook (the stand-in for NVIDIA's hook, on dockerd's PATH) puts a stand-in
nvidia-smi into containers of an image repository that has a GPU table in /etc/tfdock-gpu-standin/; the
table is made up here. TensorFlow in those containers finds no GPU (there is no driver), so doctor must judge
nvidia-smi's GPUs itself, say that TensorFlow saw none, and fail with one line per problem. The images are the
project's own, tagged under a repository of this test's, so no other test's containers get a table.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from enginelib import containers_created, invoke, still_there

from tfdock_host import doctor, gpu_compat, image

pytestmark = [pytest.mark.engine, pytest.mark.gpu_standin]

TABLES = Path("/etc/tfdock-gpu-standin")
# Where .ci/provision-engine puts the stand-ins (ci.yml: /usr/local/bin, on the system dockerd's PATH).
HOOK_DIR = Path("/usr/local/lib/tfdock-gpu-standin")
HEADER = "index,name,uuid,compute_cap,driver_version"
# Wide enough that no row of the table is folded over lines.
WIDE = {"COLUMNS": "2000"}


@pytest.fixture
def standin(client, runtime_image, project_settings) -> Iterator[tuple[str, Path]]:
    """A repository of this test's holding the runtime image (as the gpu variant too: TensorFlow's CPU build,
    which the report names) and the base image, and where its GPU table goes."""
    hook = HOOK_DIR / "nvidia-container-runtime-hook"
    hook = hook if hook.exists() else Path(shutil.which("nvidia-container-runtime-hook") or hook)
    if not (hook.parent / "nvidia-smi-standin").exists() or os.getuid() != 0:
        message = "needs root and the stand-in nvidia-smi beside the hook (sudo bash .ci/provision-engine)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    repository = f"tfdock-gpu-standin-{secrets.token_hex(4)}"
    tags = {"latest-cpu": runtime_image, "latest-gpu": runtime_image}
    if project_settings.base_image and client.images.list(name=project_settings.base_image):
        tags["base"] = project_settings.base_image
    for tag, source in tags.items():
        client.images.get(source).tag(repository, tag)
    table = TABLES / f"{repository}.csv"
    try:
        yield repository, table
    finally:
        table.unlink(missing_ok=True)
        for tag in tags:
            client.images.remove(f"{repository}:{tag}")


def doctor_with(client, standin: tuple[str, Path], rows: list[str]) -> tuple[int, list[str]]:
    """`invoke doctor --gpus all` with this GPU table: its exit code and output lines."""
    repository, table = standin
    TABLES.mkdir(exist_ok=True)
    table.write_text("\n".join(rows) + "\n")
    env = {**WIDE, "INVOKE_TFDOCK_IMAGE": repository, "INVOKE_TFDOCK_BASE_IMAGE": f"{repository}:base"}
    with containers_created(client, "doctor") as created:
        result = invoke("doctor", "--gpus", "all", env=env, timeout=600)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    assert created and still_there(client, created) == []
    return result.returncode, result.stdout.splitlines()


def lines_with(lines: list[str], *words: str) -> list[str]:
    return [line for line in lines if all(word in line for word in words)]


def test_a_kepler_gpu_is_one_line_saying_the_images_tensorflow_has_no_kernels_and_none_current_has(
    client, standin
):
    code, lines = doctor_with(client, standin, [HEADER, "0,Tesla K80,GPU-standin-0,3.7,470.256.02"])
    assert code == 1
    assert lines_with(lines, doctor.GPUS_IN_CONTAINER, "GPU 0: Tesla K80 (3.7, driver 470.256.02)")
    (verdict,) = lines_with(lines, "3.7: this TensorFlow has no kernels for it")
    assert doctor.TENSORFLOW_GPUS in verdict and doctor.FAIL in verdict
    assert "(not a CUDA build)" in verdict and "sees no GPU" in verdict  # TensorFlow itself saw none
    assert "by TensorFlow 2.21.0's CUDA wheel (the gpu variant)" in verdict
    assert gpu_compat.KEPLER_ADVICE in verdict
    # Kepler's last driver is R470: older than CUDA 12 runs on, one line of its own.
    (driver,) = lines_with(lines, doctor.NVIDIA_DRIVER, doctor.FAIL)
    assert "470.256.02 is older than 525.60.13" in driver


@pytest.mark.parametrize(
    "row",
    ["0,NVIDIA B200,GPU-standin-0,10.0,570.124.06", "0,NVIDIA GeForce RTX 5090,GPU-standin-0,12.0,575.51.03"],
)
def test_a_blackwell_gpu_is_told_which_base_it_needs(client, standin, row):
    code, lines = doctor_with(client, standin, [HEADER, row])
    assert code == 1
    (verdict,) = lines_with(lines, "(Blackwell or later): this TensorFlow has no kernels for it")
    assert doctor.TENSORFLOW_GPUS in verdict and gpu_compat.BLACKWELL_ADVICE in verdict
    assert lines_with(lines, doctor.NVIDIA_DRIVER, doctor.OK, "(>= 525.60.13)")


def test_a_container_that_lost_its_gpus_is_named_with_the_fix(client, standin):
    code, lines = doctor_with(client, standin, [f"error: {gpu_compat.NVML_LOST}"])
    assert code == 1
    (lost,) = lines_with(lines, gpu_compat.NVML_LOST)
    assert doctor.GPUS_IN_CONTAINER in lost and doctor.FAIL in lost
    assert "systemctl daemon-reload" in lost and "nvidia-ctk system create-dev-char-symlinks" in lost


def test_a_driver_too_old_for_the_images_cuda_is_one_line(client, standin):
    code, lines = doctor_with(client, standin, [HEADER, "0,Tesla T4,GPU-standin-0,7.5,520.61.05"])
    assert code == 1
    cuda = gpu_compat.lock_cuda(image.lock_files("gpu")[0].read_text())
    (driver,) = lines_with(lines, "520.61.05 is older than 525.60.13")
    assert doctor.NVIDIA_DRIVER in driver and f"(the image's CUDA wheels are {cuda})" in driver
    assert "upgrade the host's NVIDIA driver to 525.60.13 or later" in driver
    # The T4 has kernels (sm_70 code runs on 7.5); TensorFlow saw it not, and says so.
    (seen,) = lines_with(lines, doctor.TENSORFLOW_GPUS, "sees no GPU")
    assert "GPU 0 Tesla T4 (7.5: sm_70 kernels" in seen


def test_a_driver_whose_nvidia_smi_has_no_compute_cap_field_is_too_old(client, standin):
    # The stand-in answers a field its table lacks as nvidia-smi does a field its driver does not know.
    code, lines = doctor_with(
        client, standin, ["index,name,uuid,driver_version", "0,Tesla K80,GPU-standin-0,418.87.00"]
    )
    assert code == 1
    (old,) = lines_with(lines, doctor.GPUS_IN_CONTAINER, "cannot report compute_cap")
    assert doctor.FAIL in old and "525.60.13 or later" in old

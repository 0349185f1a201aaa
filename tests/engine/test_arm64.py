"""linux/arm64 images under emulation (qemu-user through binfmt_misc): built from the aarch64 locks, trained
in, and their model scored by the amd64 image identically; a chosen slice of the container suite in the
arm64 dev image. An arm64 image is never run by accident where the engine is amd64.

Needs the qemu-aarch64 handler and an arm64 base image: `bash .ci/provision-arm64` makes both here and prints
the base, which TFDOCK_ARM64_BASE_IMAGE names (default: the project's base image, when it is multi-arch and
a registry answers). The builds' pip runs natively in the installer stage, in the project's base (or
installer_image), never under emulation. Skipped without them, but failing under CI=true. Emulation is
still slow for TensorFlow itself (each import takes minutes): hence one 512-image epoch and container tests
that train nothing. `nox -s arm64`, one of the default sessions, runs only these; `nox -s engine` the rest.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from enginelib import invoke

from tfdock_host import image

pytestmark = [pytest.mark.engine, pytest.mark.arm64]

HANDLER = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
PLATFORM = "linux/arm64"
SUBSET = ["--limit-train", "512", "--limit-test", "256", "--batch-size", "64"]
# In one process (each new one imports TensorFlow again, minutes under emulation), training nothing: the
# image is the project's, the data code reads real files, the model and its input pipeline run on
# TensorFlow's aarch64 build.
CONTAINER_TESTS = [f"tests/container/test_{name}.py" for name in ("environment", "data", "pipeline")]
# Probabilities of the first test images, printed as JSON by the image's own Keras.
SCORE = """
import json, pathlib, keras
from tfdock import data
pixels = data.load(pathlib.Path("/data"), "fashion-mnist").test_images[:300]
print(json.dumps(keras.models.load_model("/run/model.keras").predict(pixels, verbose=0).tolist()))
"""


def emulation_missing() -> str:
    if not HANDLER.is_file():
        return f"no {HANDLER} (binfmt_misc unmounted, or qemu-user-static missing): bash .ci/provision-arm64"
    lines = HANDLER.read_text().splitlines()
    if lines[0] != "enabled" or not any(re.match(r"flags: \S*F", line) for line in lines):
        return f"{HANDLER} is disabled or lacks the F flag containers need: bash .ci/provision-arm64"
    return ""


@pytest.fixture(scope="module")
def arm64_env(project_settings) -> dict[str, str]:
    """INVOKE_TFDOCK_* for tasks on linux/arm64 (their own -arm64 tags), after checking emulation works."""
    missing = emulation_missing()
    if missing:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(missing)
    return {
        "INVOKE_TFDOCK_PLATFORM": PLATFORM,
        "INVOKE_TFDOCK_BASE_IMAGE": os.environ.get("TFDOCK_ARM64_BASE_IMAGE", project_settings.base_image),
        # The engine's own platform: pip's stage runs natively (the project's base, multi-arch or not).
        "INVOKE_TFDOCK_INSTALLER_IMAGE": project_settings.installer_image or project_settings.base_image,
    }


def timed(what: str, *args: str, env: dict[str, str], timeout: float = 2400):
    started = time.monotonic()
    result = invoke(*args, env=env, timeout=timeout)
    print(f"arm64 under emulation: {what} took {time.monotonic() - started:.0f} s")
    assert result.returncode == 0, f"{what}: {result.stderr[-3000:]}"
    return result


def built(client, project_settings, env, target: str):
    timed(f"invoke build --platform {PLATFORM} --target {target}", "build", "--platform", PLATFORM,
          "--target", target, env=env)  # fmt: skip
    arm64 = project_settings.apply(platform=PLATFORM)
    tag = image.latest_tag(arm64, arm64.variant, target)
    built_image = client.images.get(tag)
    assert built_image.attrs["Architecture"] == "arm64"
    assert built_image.labels[image.ARCH_LABEL] == "arm64"
    assert built_image.labels[image.HASH_LABEL] == image.content_hash(arm64.variant, "arm64")
    return tag


@pytest.fixture(scope="module")
def arm64_runtime(client, project_settings, arm64_env) -> str:
    return built(client, project_settings, arm64_env, "runtime")


def score(client, tag: str, run_dir: Path, fashion_mnist: Path) -> list[list[float]]:
    output = client.containers.run(
        tag,
        ["python", "-c", SCORE],
        volumes={
            str(run_dir): {"bind": "/run", "mode": "ro"},
            str(fashion_mnist): {"bind": "/data", "mode": "ro"},
        },
        network_disabled=True,
        remove=True,
    )
    return json.loads(output.decode().strip().splitlines()[-1])


def test_the_arm64_runtime_image_installs_the_aarch64_locks(client, arm64_runtime):
    report = client.containers.run(
        arm64_runtime,
        ["sh", "-c", "uname -m; pip list --format=freeze"],
        network_disabled=True,
        remove=True,
    ).decode()
    assert report.splitlines()[0] == "aarch64"
    assert "tensorflow==2.21.0" in report.splitlines()
    assert "tensorflow-cpu" not in report


def test_a_model_trained_on_arm64_scores_identically_in_the_amd64_image(
    client, arm64_runtime, arm64_env, runtime_image, fashion_mnist, scratch
):
    where = ["--data-dir", str(fashion_mnist), "--output-dir", str(scratch)]
    timed("invoke train --epochs 1 (512 images)", "train", "--epochs", "1", *where,
          "--", *SUBSET, "--run-name", "arm64", env=arm64_env)  # fmt: skip
    run_dir = scratch / "arm64"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    print(f"arm64 run: test accuracy {metrics['test_accuracy']:.3f} after {metrics['wall_seconds']:.0f} s")
    # Eight steps teach little (the recipe warms up first): what this proves is the run and its scores.
    assert metrics["status"] == "complete" and metrics["epochs_completed"] == 1
    on_arm64 = score(client, arm64_runtime, run_dir, fashion_mnist)
    on_amd64 = score(client, runtime_image, run_dir, fashion_mnist)
    assert client.images.get(runtime_image).attrs["Architecture"] == "amd64"
    assert len(on_arm64) == len(on_amd64) == 300 and {len(row) for row in on_arm64 + on_amd64} == {10}
    worst = max(
        abs(a - b) for rows in zip(on_amd64, on_arm64, strict=True) for a, b in zip(*rows, strict=True)
    )
    print(f"largest difference of a probability between arm64 and amd64: {worst:.2e}")
    assert worst < 1e-5
    classes = [[row.index(max(row)) for row in rows] for rows in (on_amd64, on_arm64)]
    assert classes[0] == classes[1]


def test_the_chosen_container_tests_pass_in_the_arm64_dev_image(client, project_settings, arm64_env):
    built(client, project_settings, arm64_env, "dev")
    result = timed(
        "invoke test (chosen container tests)", "test", "--", *CONTAINER_TESTS, "-q", env=arm64_env
    )
    summary = result.stdout.strip().splitlines()[-1]
    print(f"arm64 container tests: {summary}")
    assert re.search(r"\d+ passed", summary) and "failed" not in summary, summary


def test_an_arm64_image_under_the_engines_own_tag_is_refused_in_one_line(client, arm64_runtime, scratch):
    """Here (amd64) nothing would stop Docker from running it emulated, or, without qemu, failing with
    `exec format error`: the tasks refuse it first."""
    repository = f"tfdock-foreign-{os.getpid()}"
    client.images.get(arm64_runtime).tag(repository, "latest-cpu")
    try:
        result = invoke("train", "--output-dir", str(scratch), env={"INVOKE_TFDOCK_IMAGE": repository})
    finally:
        client.images.remove(f"{repository}:latest-cpu")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{repository}:latest-cpu is built for linux/arm64" in lines[0]
    assert "invoke build" in result.stderr

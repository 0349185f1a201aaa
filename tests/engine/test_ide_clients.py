"""The IDE integration driven by the real clients: docker-compose, the Dev Containers CLI, a DAP client
attached to debugpy in a training container, and the TensorFlow profiler's trace of `invoke train`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from dap_client import DapClient
from docker.errors import ImageNotFound
from enginelib import ROOT, free_port, invoke
from invoke.util import yaml  # PyYAML, vendored by invoke: the host tools have no other

from tfdock_host import engine, run, workbench

pytestmark = pytest.mark.engine

COMPOSE_FILE = ROOT / "docker" / "compose.yaml"
COMPOSE_GPU_FILE = ROOT / "docker" / "compose.gpu.yaml"
COMPOSE_PROJECT = "tfdock-ide-test"
DEVCONTAINER_CONFIG = ROOT / ".devcontainer" / "cpu" / "devcontainer.json"
TRAIN_SOURCE = ROOT / "src" / "tfdock" / "train.py"
# One step per epoch at the default batch size: enough to stop at a breakpoint in the loop.
SMALL_RUN = ["--limit-train", "512", "--limit-test", "256"]
DEBUG_ATTACH_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def base_image_env(project_settings) -> dict[str, str]:
    """The compose files and devcontainer.json read the base image from TFDOCK_BASE_IMAGE: the same one
    `invoke build` uses here (the offline twin in CI), so their builds hit the same cache."""
    return {"TFDOCK_BASE_IMAGE": project_settings.base_image}


def compose(
    *args: str,
    files: tuple[Path, ...] = (COMPOSE_FILE,),
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    command = ["docker-compose", "--project-name", COMPOSE_PROJECT]
    for file in files:
        command += ["-f", str(file)]
    # Without UID/GID in the environment, the files' defaults (1000:1000) apply, as for most shells.
    inherited = {key: value for key, value in os.environ.items() if key not in ("UID", "GID")}
    return subprocess.run(
        [*command, *args],
        cwd=ROOT,
        env={**inherited, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def rendered(files: tuple[Path, ...], env: dict[str, str]) -> dict:
    result = compose("config", files=files, env=env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def test_compose_config_keeps_the_house_rules(base_image_env):
    services = rendered((COMPOSE_FILE,), base_image_env)

    assert set(services) == {"dev", "notebook", "tensorboard", "train"}
    for name, service in services.items():
        assert all(port.startswith("127.0.0.1:") for port in service.get("ports", [])), name
        assert service["cap_drop"] == ["ALL"], name
        assert service["security_opt"] == ["no-new-privileges"], name
        assert "deploy" not in service, f"{name} reserves GPUs without the override"
    assert services["dev"]["user"] == "1000:1000"
    assert services["dev"]["command"] == ["sleep", "infinity"]
    assert services["dev"]["image"] == "tfdock:latest-cpu-dev"
    assert services["dev"]["build"]["args"]["BASE_IMAGE"] == base_image_env["TFDOCK_BASE_IMAGE"]
    assert services["dev"]["build"]["args"]["INSTALLER_IMAGE"] == base_image_env["TFDOCK_BASE_IMAGE"]
    assert f"{ROOT}:/workspace:rw" in services["dev"]["volumes"]
    assert services["notebook"]["ports"] == ["127.0.0.1:8888:8888/tcp"]
    assert services["tensorboard"]["ports"] == ["127.0.0.1:6006:6006/tcp"]
    assert services["train"]["network_mode"] == "none"
    assert services["train"]["build"]["target"] == "runtime"


def test_compose_user_mapping_follows_uid_and_gid(base_image_env):
    services = rendered((COMPOSE_FILE,), {**base_image_env, "UID": "4321", "GID": "987"})

    assert services["dev"]["user"] == "4321:987"
    assert services["dev"]["build"]["args"]["UID"] == "4321"


def test_compose_gpu_override_reserves_gpus_for_dev_and_train_only(base_image_env):
    services = rendered((COMPOSE_FILE, COMPOSE_GPU_FILE), base_image_env)

    gpu = {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    for name in ("dev", "train"):
        assert services[name]["deploy"]["resources"]["reservations"]["devices"] == [gpu]
        assert services[name]["build"]["args"]["VARIANT"] == "gpu"
    assert services["dev"]["image"] == "tfdock:latest-gpu-dev"
    assert services["train"]["image"] == "tfdock:latest-gpu"
    assert "deploy" not in services["notebook"]
    assert "deploy" not in services["tensorboard"]


def test_compose_runs_the_container_suite_in_the_dev_service(
    base_image_env, dev_image, fashion_mnist, client
):
    env = {**base_image_env, "TFDOCK_DATA_DIR": str(fashion_mnist)}
    try:
        result = compose(
            "run", "--rm", "dev",
            "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/container/test_environment.py",
            env=env,
        )  # fmt: skip
    finally:
        down = compose("down", "--remove-orphans", env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "1 passed" in output
    assert "Building" not in output, "compose rebuilt instead of using the image `invoke build` made"
    assert down.returncode == 0, down.stderr
    compose_label = f"com.docker.compose.project={COMPOSE_PROJECT}"
    assert client.containers.list(all=True, filters={"label": compose_label}) == []


@pytest.mark.skipif(
    shutil.which("devcontainer") is None,
    reason="Dev Containers CLI not installed: npm i -g @devcontainers/cli",
)
def test_devcontainer_cli_builds_from_cache_and_runs_tensorflow(
    base_image_env, dev_image, client, project_settings
):
    # Debian's 20.10 client builds with the engine's BuildKit when DOCKER_BUILDKIT=1 (the Dockerfile's cache
    # and secret mounts need it); a newer client without buildx would fall back to the legacy builder.
    env = {**os.environ, **base_image_env, "DOCKER_BUILDKIT": "1"}
    cli = ["devcontainer"]
    target = ["--docker-path", engine.buildkit_cli(project_settings.docker_cli),
              "--workspace-folder", str(ROOT), "--config", str(DEVCONTAINER_CONFIG)]  # fmt: skip
    labels = [f"devcontainer.local_folder={ROOT}", f"devcontainer.config_file={DEVCONTAINER_CONFIG}"]
    try:
        started = time.monotonic()
        up = subprocess.run(
            [*cli, "up", *target], env=env, capture_output=True, text=True, timeout=900, check=False
        )
        up_seconds = time.monotonic() - started
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert json.loads(up.stdout.strip().splitlines()[-1])["outcome"] == "success"
        print(f"devcontainer up: {up_seconds:.1f} s")

        probe = "import tensorflow as tf, tfdock; print(tf.__version__, tfdock.__file__)"
        result = subprocess.run(
            [*cli, "exec", *target, "python", "-c", probe],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        version, package = result.stdout.split()[-2:]
        assert version.startswith("2.21.")
        assert package == "/workspace/src/tfdock/__init__.py", "the bind-mounted source must win"
        # What `invoke clean --all` removes besides `invoke build`'s tags: the image this container runs.
        (container,) = client.containers.list(filters={"label": labels})
        cleaned = {built.id for built in workbench.devcontainer_images(client)}
        assert container.image.id in cleaned and client.images.get(dev_image).id not in cleaned
    finally:
        # The CLI names its images after the checkout (vsc-<folder>-<hash>, and the container's with -uid):
        # a clean clone's names would stay behind for good, two more per CI run. Removing the names leaves
        # the layers that other names share.
        names = set()
        for container in client.containers.list(all=True, filters={"label": labels}):
            name = container.attrs["Config"]["Image"]
            names |= {name, name.removesuffix("-uid")} if name.startswith("vsc-") else set()
            container.remove(force=True)
        for name in names:
            with contextlib.suppress(ImageNotFound):
                client.images.remove(name)
    assert client.containers.list(all=True, filters={"label": labels}) == []


def _containers_writing_to(client, output_dir: Path) -> list:
    """This test's containers: the project's, with output_dir mounted (other suites may run alongside)."""
    project = client.containers.list(all=True, filters={"label": f"{run.PROJECT_LABEL}=tfdock"})
    return [c for c in project if any(m.get("Source") == str(output_dir) for m in c.attrs["Mounts"])]


def _line_of(path: Path, statement: str) -> int:
    numbered = enumerate(path.read_text().splitlines(), start=1)
    lines = [number for number, line in numbered if line.strip() == statement]
    assert len(lines) == 1, f"expected one `{statement}` in {path}, found lines {lines}"
    return lines[0]


@pytest.mark.slow
def test_dap_client_stops_at_a_breakpoint_in_the_training_loop(fashion_mnist, dev_image, client, tmp_path):
    breakpoint_line = _line_of(TRAIN_SOURCE, "trainer.train_steps(batches, steps)")
    outputs = tmp_path / "outputs"
    log = (tmp_path / "invoke.log").open("w")
    training = subprocess.Popen(
        [
            sys.executable, "-m", "invoke", "train", "--debug", "--gpus", "none", "--epochs", "1",
            "--data-dir", str(fashion_mnist), "--output-dir", str(outputs), "--", *SMALL_RUN,
        ],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    dap = None
    try:
        deadline = time.monotonic() + DEBUG_ATTACH_TIMEOUT_S
        dap = DapClient.connect("127.0.0.1", run.DEBUG_PORT, deadline)
        attach = dap.send(
            "attach",
            {"justMyCode": False, "pathMappings": [{"localRoot": str(ROOT), "remoteRoot": run.WORKSPACE}]},
        )
        dap.event("initialized")
        breakpoints = dap.request(
            "setBreakpoints",
            {"source": {"path": str(TRAIN_SOURCE)}, "breakpoints": [{"line": breakpoint_line}]},
        )["breakpoints"]
        assert breakpoints[0]["verified"], breakpoints
        dap.request("configurationDone")
        dap.response_to(attach)

        stopped = dap.event("stopped", timeout=DEBUG_ATTACH_TIMEOUT_S)
        assert stopped["reason"] == "breakpoint", stopped
        frames = dap.request("stackTrace", {"threadId": stopped["threadId"], "levels": 1})["stackFrames"]
        assert frames[0]["source"]["path"] == str(TRAIN_SOURCE), "pathMappings did not map the frame back"
        assert frames[0]["line"] == breakpoint_line

        dap.request("setBreakpoints", {"source": {"path": str(TRAIN_SOURCE)}, "breakpoints": []})
        dap.request("continue", {"threadId": stopped["threadId"]})
        dap.request("disconnect", {"terminateDebuggee": False})
        exit_code = training.wait(timeout=DEBUG_ATTACH_TIMEOUT_S)
        assert exit_code == 0, (tmp_path / "invoke.log").read_text()[-3000:]
    finally:
        if dap:
            dap.close()
        if training.poll() is None:  # invoke stops and removes its container on SIGINT
            os.killpg(training.pid, signal.SIGINT)
            training.wait(timeout=60)
        log.close()
        for container in _containers_writing_to(client, outputs):
            container.remove(force=True)
    metrics = json.loads((outputs / "latest" / "metrics.json").read_text())
    assert metrics["status"] == "complete"
    assert _containers_writing_to(client, outputs) == []


@pytest.mark.slow
def test_profile_leaves_a_trace_in_the_runs_tensorboard_dir(fashion_mnist, runtime_image, tmp_path):
    outputs = tmp_path / "outputs"
    # Batches of 64 make 7 steps of the 460 training images, so steps 2 and 3 are traced.
    result = invoke(
        "train", "--profile", "2:4", "--gpus", "none", "--epochs", "1", "--batch-size", "64",
        "--data-dir", str(fashion_mnist), "--output-dir", str(outputs), "--", *SMALL_RUN,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    traces = list((outputs / "latest" / "tensorboard").glob("plugins/profile/*/*.xplane.pb"))
    assert traces, sorted(str(p.relative_to(outputs)) for p in outputs.rglob("*"))
    assert traces[0].stat().st_size > 0


def test_compose_notebook_always_requires_a_token(base_image_env, dev_image):
    """Without JUPYTER_TOKEN, Jupyter makes a random one: the API refuses requests that lack it."""
    port = free_port()  # not 8888: a notebook of yours, or another run's, may hold it
    env = {**base_image_env, "JUPYTER_TOKEN": "", "TFDOCK_NOTEBOOK_PORT": str(port)}
    try:
        up = compose("up", "--detach", "notebook", env=env)
        assert up.returncode == 0, up.stderr
        token = _logged_jupyter_token(env)
        assert len(token) >= 32
        assert _http_status(f"http://127.0.0.1:{port}/api/status") == 403
        assert _http_status(f"http://127.0.0.1:{port}/api/status?token={token}") == 200
    finally:
        compose("down", "--remove-orphans", env=env)


def _logged_jupyter_token(env: dict[str, str], timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = compose("logs", "notebook", env=env).stdout
        found = re.search(r"127\.0\.0\.1:8888/lab\?token=(\w+)", logs)
        if found:
            return found.group(1)
        time.sleep(1)
    raise AssertionError(f"JupyterLab printed no token URL within {timeout} s")


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code

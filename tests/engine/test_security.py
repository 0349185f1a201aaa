"""Security defaults, checked on live containers: non-root, no capabilities, no new privileges, no network
for work, read-only data and source, ports on 127.0.0.1 only, Jupyter behind a token, no secret in an image,
and `invoke doctor` failing on a world-writable daemon socket."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from enginelib import ROOT, STEP_DELAY_S, containers_mounting, free_port, invoke, limit_train, start_invoke

from tfdock_host import engine, run

pytestmark = pytest.mark.engine

# Paced (FOR TESTS ONLY: --step-delay after every step) and long in steps: the run outlasts the checks made
# on its container, then Ctrl-C ends it.
TRAINING_EPOCHS = 100
PACED_TRAINING = ["--limit-train", str(limit_train(1000)), "--limit-test", "200"]
PACED_TRAINING += ["--step-delay", str(STEP_DELAY_S)]
DOCKER_SOCKET = Path("/var/run/docker.sock")
NO_CAPABILITIES = "0000000000000000"


@contextlib.contextmanager
def running_task(client, args: list[str], marker: Path, env: dict[str, str]):
    """`invoke ARGS` in the background until its container (the one mounting marker) runs; Ctrl-C at the end.
    Yields the process and the container."""
    process = start_invoke(*args, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600  # bounds a hang, sized for a loaded machine
        while not (container := next(iter(containers_mounting(client, marker, status="running")), None)):
            assert process.poll() is None, (
                f"exited with {process.returncode}: {process.stderr.read()[-2000:]}"
            )
            assert time.monotonic() < deadline, "no running container after 600 s"
            time.sleep(0.3)
        yield process, container
        container.reload()
        assert container.status == "running", f"the task ended during the checks ({container.status})"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    assert process.returncode == 130


def output_of(container, *command: str) -> tuple[int, str]:
    exit_code, output = container.exec_run(list(command))
    return exit_code, output.decode().strip()


@pytest.mark.parametrize(
    ("task", "read_only_data"),
    [("train", run.DATA_DIR), ("test", "/datasets/fashion-mnist")],
)
def test_task_containers_run_unprivileged_offline_with_read_only_data(
    client, fashion_mnist, runtime_image, dev_image, scratch, task, read_only_data
):
    if task == "train":
        args = ["train", "--data-dir", str(fashion_mnist), "--output-dir", str(scratch)]
        args += ["--epochs", str(TRAINING_EPOCHS), "--", *PACED_TRAINING]
    else:
        args = ["test", "--", "-q"]
    with running_task(client, args, scratch, {"INVOKE_TFDOCK_REPORTS_DIR": str(scratch)}) as (_, container):
        host_config = container.attrs["HostConfig"]
        assert host_config["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in host_config["SecurityOpt"]
        assert host_config["NetworkMode"] == "none"
        assert container.attrs["Config"]["User"] not in ("0", "root", "0:0")
        assert output_of(container, "id", "-u")[1] != "0"
        _, status = output_of(container, "cat", "/proc/1/status")
        assert re.search(rf"^CapEff:\s+{NO_CAPABILITIES}$", status, re.M), status
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status
        assert output_of(container, "ls", "/sys/class/net") == (0, "lo")
        for read_only in (read_only_data, run.WORKSPACE):
            exit_code, message = output_of(container, "touch", f"{read_only}/written-by-the-container")
            assert exit_code != 0 and "Read-only file system" in message, (read_only, message)


def http_status(url: str, timeout: float = 600) -> int:
    """The status of GET url, once something answers there."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def assert_published_on_loopback_only(container, inside: int, port: int) -> None:
    bindings = container.attrs["HostConfig"]["PortBindings"]
    assert bindings == {f"{inside}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}, bindings


def test_tensorboard_is_published_on_loopback_only(client, dev_image, scratch):
    port = free_port()
    env = {"INVOKE_TFDOCK_OUTPUT_DIR": str(scratch)}
    with running_task(client, ["tensorboard", "--port", str(port)], scratch, env) as (_, container):
        assert_published_on_loopback_only(container, 6006, port)
        assert http_status(f"http://127.0.0.1:{port}/") == 200


def test_jupyter_is_published_on_loopback_only_and_requires_its_token(client, dev_image, scratch):
    port = free_port()
    env = {"INVOKE_TFDOCK_OUTPUT_DIR": str(scratch)}
    with running_task(client, ["notebook", "--port", str(port)], scratch, env) as (process, container):
        announced = process.stderr.readline()
        token = re.search(r"token=(\S+)", announced).group(1)
        assert_published_on_loopback_only(container, 8888, port)
        api = f"http://127.0.0.1:{port}/api/contents"
        assert http_status(api) == 403
        assert http_status(f"{api}?token={token}") == 200
        assert http_status(f"{api}?token=not-{token}") == 403


def test_no_secret_in_the_repo_reaches_the_build_context(project_settings, tmp_path):
    """What BuildKit sends under the project's .dockerignore, with secrets planted next to the real files."""
    context = tmp_path / "context"
    kept = ["requirements/runtime-cpu.txt", "src/tfdock/__init__.py"]
    planted = [".env", "secret.pem", "src/tfdock/.env", "src/tfdock/key.pem", "requirements/ca.crt"]
    planted += [".git/config", "data/fashion-mnist/x", "outputs/run/model.keras", "notebooks/n.ipynb"]
    for name in kept + planted:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_text(name)
    shutil.copy(ROOT / ".dockerignore", context)
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\nCOPY . /\n")
    exported = tmp_path / "exported"
    subprocess.run(
        [
            engine.buildkit_cli(project_settings.docker_cli),
            "build",
            "-q",
            "-f",
            str(dockerfile),
            "-o",
            f"type=local,dest={exported}",
            str(context),
        ],
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
        check=True,
        capture_output=True,
    )
    sent = sorted(str(path.relative_to(exported)) for path in exported.rglob("*") if path.is_file())
    assert sent == kept


@pytest.mark.parametrize("target", ["runtime", "dev"])
def test_the_images_hold_no_project_secrets(client, runtime_image, dev_image, target):
    image = runtime_image if target == "runtime" else dev_image
    found = client.containers.run(
        image,
        ["find", "/opt/tfdock", "/workspace", "-name", ".env", "-o", "-name", "*.pem", "-o", "-name", ".git"],
        network_mode="none",
        remove=True,
    )
    assert found.decode().strip() == ""


def test_doctor_fails_when_the_daemon_socket_is_world_writable():
    mode = stat.S_IMODE(DOCKER_SOCKET.stat().st_mode)
    try:
        DOCKER_SOCKET.chmod(mode | 0o666)
        result = invoke("doctor", timeout=300)
    finally:
        DOCKER_SOCKET.chmod(mode)
    assert result.returncode == 1
    assert "world-writable" in result.stdout, result.stdout[-3000:]

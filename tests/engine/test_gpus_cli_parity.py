"""`tfdock_host.gpus.parse` against Debian's docker CLI, on a real engine: the same `--gpus` value must
leave the same HostConfig.DeviceRequests, except where the CLI's reading is the bug we fix.

Creating a container with device requests needs no GPU; starting one needs the engine's NVIDIA driver
(the real hook, or the CI stand-in from .ci/provision-engine), so only the start tests depend on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import APIError
from docker.models.containers import Container

from tfdock_host import settings
from tfdock_host.gpus import GpuRequest, parse, visible_devices

pytestmark = pytest.mark.engine

DOCKER_CLI = "/usr/bin/docker"
# Any local image will do (nothing runs): the base the project builds from is always there.
IMAGE = os.environ.get("TFDOCK_TEST_IMAGE") or settings.load().base_image
STANDIN_LOG = Path(os.environ.get("TFDOCK_GPU_STANDIN_LOG", "/var/log/tfdock-gpu-standin.log"))
CONFLICT = "cannot set both Count and DeviceIDs"

# Values the CLI and parse() read the same way.
SAME_AS_CLI = [
    "all",
    "1",
    "2",
    "count=3",
    "count=all",
    "device=0",
    '"device=0,2"',
    "device=GPU-3a2b1c0d",
    '"device=GPU-3a2b1c0d,GPU-9f8e7d6c"',
    "capabilities=compute",
    '"capabilities=compute,utility"',
    "capabilities=compute,2",
    "driver=nvidia",
    "driver=nvidia,count=all,capabilities=utility",
    '"device=0,2",capabilities=compute',
    "options=key=value",
    '"options=a=b,flag"',
]


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    engine = docker.from_env()
    yield engine
    engine.close()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER_CLI, *args], capture_output=True, text=True, timeout=120, check=False)


def cli_create(spec: str) -> subprocess.CompletedProcess[str]:
    return cli("create", "--gpus", spec, IMAGE, "true")


@contextlib.contextmanager
def cli_container(spec: str) -> Iterator[str]:
    """The id of a container the CLI created with `--gpus spec`, removed afterwards."""
    created = cli_create(spec)
    assert created.returncode == 0, created.stderr
    container_id = created.stdout.strip()
    try:
        yield container_id
    finally:
        cli("rm", "--force", container_id)


@contextlib.contextmanager
def sdk_container(client: docker.DockerClient, requests: list[GpuRequest]) -> Iterator[Container]:
    """A container the SDK created with our requests, removed afterwards."""
    device_requests = [request.to_docker() for request in requests]
    container = client.containers.create(IMAGE, "true", device_requests=device_requests)
    try:
        yield container
    finally:
        container.remove(force=True)


def recorded_requests(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    # The CLI sends DeviceIDs null and the SDK [] when none are given; the engine treats both as none.
    requests = attrs["HostConfig"]["DeviceRequests"] or []
    return [{**request, "DeviceIDs": request["DeviceIDs"] or []} for request in requests]


def cli_device_requests(spec: str) -> list[dict[str, Any]]:
    with cli_container(spec) as container_id:
        inspected = cli("inspect", "--format", "{{json .}}", container_id)
    assert inspected.returncode == 0, inspected.stderr
    return recorded_requests(json.loads(inspected.stdout))


def sdk_device_requests(client: docker.DockerClient, requests: list[GpuRequest]) -> list[dict[str, Any]]:
    with sdk_container(client, requests) as container:
        return recorded_requests(container.attrs)


@pytest.mark.parametrize("spec", SAME_AS_CLI)
def test_parse_records_the_same_device_requests_as_the_cli(client: docker.DockerClient, spec: str) -> None:
    assert sdk_device_requests(client, parse(spec)) == cli_device_requests(spec)


def test_unquoted_device_list_is_a_conflict_for_the_cli_and_two_devices_for_us(
    client: docker.DockerClient,
) -> None:
    # The CLI splits `device=0,2` at the comma and reads the `2` as a count.
    assert cli_device_requests("device=0,2") == [
        {"Driver": "", "Count": 2, "DeviceIDs": ["0"], "Capabilities": [["gpu"]], "Options": {}}
    ]
    assert sdk_device_requests(client, parse("device=0,2")) == [
        {"Driver": "", "Count": 0, "DeviceIDs": ["0", "2"], "Capabilities": [["gpu"]], "Options": {}}
    ]


def test_unquoted_uuid_list_is_rejected_by_the_cli_and_two_devices_for_us(
    client: docker.DockerClient,
) -> None:
    spec = "device=GPU-3a2b1c0d,GPU-9f8e7d6c"
    created = cli_create(spec)
    assert created.returncode != 0
    assert "count must be an integer" in created.stderr
    recorded = sdk_device_requests(client, parse(spec))
    assert [request["DeviceIDs"] for request in recorded] == [["GPU-3a2b1c0d", "GPU-9f8e7d6c"]]


def test_none_is_rejected_by_the_cli_and_no_request_for_us(client: docker.DockerClient) -> None:
    assert cli_create("none").returncode != 0
    assert sdk_device_requests(client, parse("none")) == []


@pytest.fixture
def nvidia_driver(client: docker.DockerClient) -> None:
    """Skip unless the engine can start a container that asks for a GPU (real hook or CI stand-in)."""
    with sdk_container(client, parse("1")) as container:
        try:
            container.start()
        except APIError as error:
            pytest.skip(f"the engine has no NVIDIA driver: {error.explanation}")


@pytest.mark.gpu_standin
@pytest.mark.usefixtures("nvidia_driver")
def test_the_engine_refuses_to_start_the_clis_unquoted_device_list() -> None:
    with cli_container("device=0,2") as container_id:
        started = cli("start", container_id)
    assert started.returncode != 0
    assert CONFLICT in started.stderr


@pytest.mark.gpu_standin
@pytest.mark.usefixtures("nvidia_driver")
@pytest.mark.parametrize("spec", ["all", "2", "device=1,3", '"device=0,2"', "device=GPU-3a2b1c0d"])
def test_visible_devices_is_what_the_engine_gives_the_container(
    client: docker.DockerClient, spec: str
) -> None:
    if not STANDIN_LOG.is_file():
        pytest.skip(f"no CI stand-in log at {STANDIN_LOG} to read the container's environment from")
    requests = parse(spec)
    with sdk_container(client, requests) as container:
        container.start()
        container.wait(timeout=60)
        container_id = str(container.id)
    # The stand-in hook logs one line per start: the container id, then the NVIDIA_* variables it got.
    logged = [line.split() for line in STANDIN_LOG.read_text().splitlines() if line.startswith(container_id)]
    assert logged, f"the stand-in hook logged nothing for {container_id}"
    assert f"NVIDIA_VISIBLE_DEVICES={visible_devices(requests)}" in logged[-1][1:]

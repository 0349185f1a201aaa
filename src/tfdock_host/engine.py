"""The Docker engine: one connection for the SDK, and the docker CLI that can drive BuildKit.

Engine failures become an `EngineError` whose hint says what to do; nothing here prints.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from typing import TYPE_CHECKING

from tfdock_host.errors import EngineError

if TYPE_CHECKING:
    from docker import DockerClient

NO_SOCKET_ACCESS_HINT = "join the docker group (`sudo usermod -aG docker $USER`, then log in again)"
START_DAEMON_HINT = (
    "start it (`sudo systemctl start docker`, or `sudo dockerd &`) or point DOCKER_HOST at one"
)
# What an engine without the NVIDIA runtime answers a GPU request with, and the fix: for every task and
# for doctor alike.
NO_NVIDIA_RUNTIME = 'could not select device driver ""'
NVIDIA_RUNTIME_FIX = (
    "install the NVIDIA Container Toolkit "
    "(https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html), run "
    "`sudo nvidia-ctk runtime configure --runtime=docker` and restart the daemon; or use --gpus none"
)


def lacks_nvidia_runtime(engine_message: str) -> bool:
    """Whether the engine refused a GPU request because it has no NVIDIA runtime."""
    return NO_NVIDIA_RUNTIME in engine_message


@functools.cache
def connect() -> DockerClient:
    """A client to a daemon that answered a ping."""
    import docker
    from docker.errors import DockerException

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except DockerException as error:
        reason = _root_cause(error)
        hint = NO_SOCKET_ACCESS_HINT if "Permission denied" in reason else START_DAEMON_HINT
        raise EngineError(f"cannot reach the Docker daemon at {host}: {reason}", hint) from None
    return client


def _root_cause(error: BaseException) -> str:
    """The OS-level reason buried in the docker SDK's requests/urllib3 exception chain."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        linked = (current.__cause__, current.__context__, *current.args)
        pending += [item for item in linked if isinstance(item, BaseException)]
    return str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__


def buildkit_cli(preferred: str = "") -> str:
    """Path of a docker CLI that builds with BuildKit: one with the buildx plugin, or a 20.10-era client
    whose `DOCKER_BUILDKIT=1 docker build` uses the engine's own BuildKit."""
    candidates = [preferred] if preferred else _docker_clis()
    for cli in candidates:
        if cli and _can_buildkit(cli):
            return cli
    found = ", ".join(f"{cli} ({_client_version(cli) or 'not runnable'})" for cli in candidates) or "none"
    raise EngineError(
        f"no docker CLI here can build with BuildKit (found: {found})",
        "install the buildx plugin (apt: docker-buildx-plugin or docker-buildx), or use Debian's docker.io "
        "client with INVOKE_TFDOCK_DOCKER_CLI=/usr/bin/docker",
    )


def docker_cli() -> str:
    """The docker CLI for what the SDK cannot do well (attaching a terminal); any version will do."""
    clis = _docker_clis()
    if not clis:
        raise EngineError("no docker CLI found", "install Docker's CLI (apt: docker.io or docker-ce-cli)")
    return clis[0]


def _docker_clis() -> list[str]:
    on_path = shutil.which("docker")
    candidates = [on_path] if on_path else []
    for known in ("/usr/bin/docker", "/usr/local/bin/docker"):
        if os.access(known, os.X_OK) and known not in candidates:
            candidates.append(known)
    return candidates


@functools.cache
def _client_version(cli: str) -> str:
    try:
        result = subprocess.run(
            [cli, "version", "--format", "{{.Client.Version}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return ""
    # The client answers even when the daemon does not (then it exits non-zero).
    return result.stdout.strip().splitlines()[0] if result.stdout.strip() else ""


def _can_buildkit(cli: str) -> bool:
    version = _client_version(cli)
    if not version:
        return False
    has_buildx = (
        subprocess.run([cli, "buildx", "version"], capture_output=True, timeout=30, check=False).returncode
        == 0
    )
    major = re.match(r"\d+", version)
    # Clients from 23.0 on hand `DOCKER_BUILDKIT=1 docker build` to buildx and fail without it.
    return has_buildx or (major is not None and int(major.group()) < 23)

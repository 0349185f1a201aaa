"""A container run as plain data: `RunSpec`, and `task_spec`, which applies the house rules once.

The rules: the invoking user's UID:GID (the image's non-root user when invoked as root; on a rootless
engine, engine.create_container puts the user its kind calls for in its place), a writable HOME,
the project bind-mounted read-only (its src/ wins over the image's copy), data read-only, outputs
read-write, no capabilities, no new privileges, no network unless asked, ports on 127.0.0.1 only.
Nothing here touches the host or the engine: run.py executes a spec.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shlex
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfdock_host import engine
from tfdock_host.errors import UsageError
from tfdock_host.settings import DEFAULTS, ROOT

if TYPE_CHECKING:
    from tfdock_host.gpus import GpuRequest

WORKSPACE = "/workspace"
DATA_DIR = "/data"
OUTPUT_DIR = "/outputs"
CONTAINER_HOME = "/tmp/home"
# GPU runs keep CUDA's PTX-JIT cache here, on a host dir that outlives the container (HOME is a tmpfs):
# a GPU newer than the wheel's machine code (e.g. compute capability >= 10 under TF 2.21) JIT-compiles
# TensorFlow's kernels from PTX once, not on every run. The driver's default cap (256 MiB) would evict them.
CUDA_CACHE_DIR = "/cuda-cache"
CUDA_CACHE_MAX_BYTES = 4 * 2**30  # the most the driver accepts
# What any container of the project needs, wherever it runs (tasks here, Kubernetes pods): a writable HOME
# and caches for an arbitrary UID, and GPU memory taken as needed rather than all at start.
RUNTIME_ENVIRONMENT = {
    "HOME": CONTAINER_HOME,
    "KERAS_HOME": f"{CONTAINER_HOME}/.keras",
    "XDG_CACHE_HOME": f"{CONTAINER_HOME}/.cache",
    "MPLCONFIGDIR": f"{CONTAINER_HOME}/.config/matplotlib",
    "TF_FORCE_GPU_ALLOW_GROWTH": "true",
}
# live: the entry point may rewrite one progress line in place (the host's stdout is a terminal); plain.
PROGRESS_VARIABLE = "TFDOCK_PROGRESS"
# JSON {mount point: host dir}: the entry points' messages name paths as the host sees them (tfdock.cli).
HOST_PATHS_VARIABLE = "TFDOCK_HOST_PATHS"
PROJECT_LABEL = "io.tfdock.project"
TASK_LABEL = "io.tfdock.task"
DEBUG_PORT = 5678
# The image's user when root builds it: the Dockerfile's ARG UID/GID defaults, the Kubernetes pods' user.
IMAGE_USER_IDS_WHEN_ROOT = engine.IMAGE_USER_IDS_WHEN_ROOT
DEFAULT_SHM_SIZE = DEFAULTS["shm_size"]


@dataclasses.dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = True


@dataclasses.dataclass(frozen=True)
class RunSpec:
    image: str
    command: tuple[str, ...]
    name: str
    labels: Mapping[str, str]
    mounts: tuple[Mount, ...] = ()
    user: str | None = None
    environment: Mapping[str, str] = dataclasses.field(default_factory=dict)
    gpus: tuple[GpuRequest, ...] = ()
    shm_size: str = DEFAULT_SHM_SIZE
    network: str = "none"
    ports: Mapping[int, int] = dataclasses.field(default_factory=dict)
    tty: bool = False
    interactive: bool = False
    nano_cpus: int | None = None  # a CPU quota (1e9 = one CPU); None: no limit

    def create_kwargs(self) -> dict[str, Any]:
        """Arguments for the docker SDK's `containers.create`."""
        from docker.types import Mount as DockerMount

        return {
            "image": self.image,
            "command": list(self.command),
            "name": self.name,
            "labels": dict(self.labels),
            "user": self.user,
            "environment": dict(self.environment),
            "mounts": [
                DockerMount(target=m.target, source=str(m.source), type="bind", read_only=m.read_only)
                for m in self.mounts
            ],
            "tmpfs": {CONTAINER_HOME: "mode=1777,exec,size=1g"},
            "device_requests": [gpu.to_docker() for gpu in self.gpus],
            "shm_size": self.shm_size,
            "network_mode": self.network,
            "ports": {f"{inside}/tcp": ("127.0.0.1", outside) for inside, outside in self.ports.items()},
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "tty": self.tty,
            "stdin_open": self.interactive,
            "working_dir": WORKSPACE,
            "nano_cpus": self.nano_cpus,
        }


def invoking_user() -> str | None:
    """UID:GID for the container on a rootful engine, so files on bind mounts belong to the user; None
    (the image's non-root user) when invoked as root, as in CI."""
    return engine.container_identity(engine.DOCKER, os.getuid(), os.getgid()).user


def cuda_cache_dir() -> Path:
    """The user's host dir for CUDA's PTX-JIT cache: under their cache dir, shared by their GPU runs."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser().resolve() / "tfdock" / "cuda"


def task_spec(
    task: str,
    image: str,
    command: list[str],
    *,
    data_dir: Path | None = None,
    output_dir: Path | None = None,
    extra_mounts: tuple[Mount, ...] = (),
    environment: Mapping[str, str] | None = None,
    gpus: tuple[GpuRequest, ...] = (),
    shm_size: str = DEFAULT_SHM_SIZE,
    network: str = "none",
    ports: Mapping[int, int] | None = None,
    interactive: bool = False,
    debug: bool = False,
    nano_cpus: int | None = None,
) -> RunSpec:
    """A spec with the house rules: plain data (the host dirs it names are made when it runs)."""
    mounts = [Mount(ROOT, WORKSPACE)]
    if data_dir is not None:
        mounts.append(Mount(data_dir.expanduser().resolve(), DATA_DIR))
    if output_dir is not None:
        mounts.append(Mount(output_dir.expanduser().resolve(), OUTPUT_DIR, read_only=False))
    gpu_environment = {}
    if gpus:
        mounts.append(Mount(cuda_cache_dir(), CUDA_CACHE_DIR, read_only=False))
        gpu_environment = {"CUDA_CACHE_PATH": CUDA_CACHE_DIR, "CUDA_CACHE_MAXSIZE": str(CUDA_CACHE_MAX_BYTES)}
    # A TTY keeps progress bars intact; an interactive one needs a terminal on both ends.
    tty = sys.stdout.isatty() and (sys.stdin.isatty() or not interactive)
    if debug:
        command = _under_debugger(command)
        network, ports = "bridge", {**(ports or {}), DEBUG_PORT: DEBUG_PORT}
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    mounts += extra_mounts
    return RunSpec(
        image=image,
        command=tuple(command),
        name=f"tfdock-{task}-{run_id}",
        labels={PROJECT_LABEL: "tfdock", TASK_LABEL: task, "io.tfdock.root": str(ROOT)},
        mounts=tuple(mounts),
        user=invoking_user(),
        environment={
            **RUNTIME_ENVIRONMENT,
            "PYTHONPATH": f"{WORKSPACE}/src",
            "TFDOCK_IMAGE": image,
            # On a terminal, progress may rewrite one live line (\r); in a log, plain lines.
            PROGRESS_VARIABLE: "live" if tty else "plain",
            HOST_PATHS_VARIABLE: json.dumps({mount.target: str(mount.source) for mount in mounts}),
            **gpu_environment,
            **(environment or {}),
        },
        gpus=gpus,
        shm_size=shm_size,
        network=network,
        ports=ports or {},
        tty=tty,
        interactive=interactive,
        nano_cpus=nano_cpus,
    )


def _under_debugger(command: list[str]) -> list[str]:
    """`python -m MODULE ARGS` run by debugpy, waiting for an IDE to attach. debugpy listens on all the
    container's interfaces; the port is published on the host's loopback only."""
    if command[:2] != ["python", "-m"]:
        raise UsageError(
            f"cannot debug `{shlex.join(command)}`", "only `python -m MODULE` runs under debugpy"
        )
    return ["python", "-m", "debugpy", "--listen", f"0.0.0.0:{DEBUG_PORT}", "--wait-for-client", *command[1:]]

"""Running a container: the one place that knows the container lifecycle (create, stream, signals,
cleanup, exit code), for a `RunSpec` (spec.py). Host dirs a spec mounts are made here, just before the
run: Docker would make them as root. The container runs as the user the engine's kind calls for
(engine.container_identity, applied by engine.create_container), so files on bind mounts are the user's.

Every task (train, test, lint, evaluate, notebook, tensorboard, shell) runs through `execute` or
`execute_group`; the spec's names are importable from here too.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfdock_host import console, engine
from tfdock_host.engine import NVIDIA_RUNTIME_FIX, connect, docker_cli, lacks_nvidia_runtime
from tfdock_host.errors import EngineError, UsageError
from tfdock_host.spec import (
    CONTAINER_HOME,
    DATA_DIR,
    DEBUG_PORT,
    DEFAULT_SHM_SIZE,
    IMAGE_USER_IDS_WHEN_ROOT,
    OUTPUT_DIR,
    PROJECT_LABEL,
    RUNTIME_ENVIRONMENT,
    TASK_LABEL,
    WORKSPACE,
    Mount,
    RunSpec,
    invoking_user,
    task_spec,
)

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

    from tfdock_host.gpus import GpuRequest

STOP_TIMEOUT_S = 10
REMOVE_ATTEMPTS = 3
AFTER_DAEMON_LOSS = "once it is back, `invoke clean` removes leftovers and `invoke train --resume` continues"
# The spec's names, used through this module by the tasks and tests, with the lifecycle's own.
__all__ = [
    "AFTER_DAEMON_LOSS",
    "CONTAINER_HOME",
    "DATA_DIR",
    "DEBUG_PORT",
    "DEFAULT_SHM_SIZE",
    "IMAGE_USER_IDS_WHEN_ROOT",
    "OUTPUT_DIR",
    "PROJECT_LABEL",
    "REMOVE_ATTEMPTS",
    "RUNTIME_ENVIRONMENT",
    "STOP_TIMEOUT_S",
    "TASK_LABEL",
    "WORKSPACE",
    "Interrupted",
    "Mount",
    "RunSpec",
    "execute",
    "execute_group",
    "host_dir",
    "invoking_user",
    "prepare_host_dirs",
    "require_gpu_access",
    "task_spec",
]


def prepare_host_dirs(spec: RunSpec) -> None:
    """Make the host dirs the spec mounts (Docker would make them as root) and, invoked as root, hand the
    writable ones to the container's user on the host (the image's user; a rootless engine's own user)."""
    owner = engine.current().identity.writable_owner
    for mount in spec.mounts:
        host_dir(mount.source)
        if not mount.read_only and owner:
            _hand_over(mount.source, owner)


def _hand_over(path: Path, owner: tuple[int, int]) -> None:
    for entry in [path, *path.rglob("*")]:
        if entry.lstat().st_uid != owner[0]:
            os.lchown(entry, *owner)


def host_dir(path: Path) -> Path:
    """A host dir to mount, made now if missing: Docker would make it as root."""
    path = path.expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{path} is not a usable directory ({error.strerror})", "pick another dir") from None
    return path


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


def execute(spec: RunSpec) -> int:
    """Create, start and stream the container; return its exit code (130/143 when we were interrupted).

    An interactive spec is attached with the docker CLI (`docker start -ai`), which owns the terminal:
    raw mode, resizes, stdin. The container is removed on every path; on SIGINT/SIGTERM it is first
    stopped within STOP_TIMEOUT_S.
    """
    prepare_host_dirs(spec)
    client = connect()
    with _managed(client, [spec]) as signals:
        try:
            with signals.held():
                container = engine.create_container(client, spec.create_kwargs())
            if spec.interactive:
                attach = [docker_cli(), "start", "--attach", "--interactive", spec.name]
                cli_environment = engine.endpoint().cli_environment(os.environ)
                return subprocess.run(attach, env=cli_environment, check=False).returncode
            output = _attach(container)
            container.start()
            _copy_output(output)
            return int(container.wait()["StatusCode"])
        except Interrupted as interrupted:
            _stop(client, [spec], reason=str(interrupted))
            return interrupted.exit_code


def require_gpu_access(probe_image: str, gpus: tuple[GpuRequest, ...]) -> None:
    """Ask the engine for the GPUs with a no-op container first: a host without the NVIDIA runtime learns
    it at once, not after building a multi-GB gpu image. Skipped when the probe image is not local yet."""
    from docker.errors import ImageNotFound

    try:
        connect().images.get(probe_image)
    except ImageNotFound:
        return
    execute(task_spec("gpu-check", probe_image, ["true"], gpus=gpus))


def execute_group(members: Mapping[str, RunSpec], private_network: str = "") -> tuple[int, str]:
    """Run the containers of one job together (e.g. training workers), each log line prefixed with its
    member name. The first to fail stops the others. With private_network, the members share a network
    of their own (internal: no route out, nothing published), made here and removed afterwards.
    Returns (exit code, the member that failed or "")."""
    specs = list(members.values())
    for spec in specs:
        prepare_host_dirs(spec)
    client = connect()
    finished: queue.Queue[tuple[str, int | None]] = queue.Queue()
    with _managed(client, specs, private_network) as signals:
        try:
            with signals.held():
                if private_network:
                    labels = {PROJECT_LABEL: "tfdock"}
                    client.networks.create(private_network, driver="bridge", internal=True, labels=labels)
                containers = {
                    member: engine.create_container(client, spec.create_kwargs())
                    for member, spec in members.items()
                }
            for member, container in containers.items():
                output = _attach(container)
                container.start()
                follow = threading.Thread(
                    target=_follow, args=(container, output, member, finished), daemon=True
                )
                follow.start()
            for _ in specs:
                name, exit_code = _wait_interruptibly(finished)
                if exit_code is None:
                    raise EngineError(
                        f"lost {name}'s container: did the engine ({engine.endpoint()}) stop?",
                        AFTER_DAEMON_LOSS,
                    )
                if exit_code != 0:
                    _stop(client, specs, reason=f"{name} exited with {exit_code}")
                    return exit_code, name
            return 0, ""
        except Interrupted as interrupted:
            _stop(client, specs, reason=str(interrupted))
            return interrupted.exit_code, ""


def _follow(
    container: Container, output: Output, prefix: str, finished: queue.Queue[tuple[str, int | None]]
) -> None:
    """Copy one container's output with a prefix, then report its exit code."""
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    exit_code = None  # the engine went away (or the job removed this container): no exit code to report
    try:
        _copy_output(output, prefix=f"[{prefix}] ".encode())
        exit_code = int(container.wait()["StatusCode"])
    except (DockerException, RequestException):
        pass
    finished.put((prefix, exit_code))


def _wait_interruptibly(finished: queue.Queue[tuple[str, int | None]]) -> tuple[str, int | None]:
    # A blocking get() without timeout would hold off SIGINT until a container ends.
    while True:
        with contextlib.suppress(queue.Empty):
            return finished.get(timeout=0.5)


def _stop(client: DockerClient, specs: list[RunSpec], reason: str) -> None:
    names = ", ".join(spec.name for spec in specs)
    console.info(f"{reason}: stopping {names} (at most {STOP_TIMEOUT_S} s)")
    for spec in specs:
        _quietly(lambda name=spec.name: client.api.stop(name, timeout=STOP_TIMEOUT_S))


@contextlib.contextmanager
def _managed(client: DockerClient, specs: list[RunSpec], network: str = "") -> Iterator[_Signals]:
    """Signals raise Interrupted; engine failures become one-line EngineErrors; the containers (and the
    job's network) are removed on every path, by name: a signal may arrive before create() returned."""
    from docker.errors import APIError

    with _Signals() as signals:
        try:
            yield signals
        except APIError as error:
            raise _engine_error(error, specs[0]) from None
        except OSError as error:  # requests' ConnectionError is an OSError: the daemon went away
            raise EngineError(
                f"lost the engine ({engine.endpoint()}) while {specs[0].name} was running: "
                f"{error.__class__.__name__}",
                AFTER_DAEMON_LOSS,
            ) from None
        finally:
            _ignore_signals()
            for spec in specs:
                _remove_container(client, spec.name)
            if network:
                _quietly(lambda: client.api.remove_network(network))


Output = Iterator[tuple[bytes | None, bytes | None]]


def _attach(container: Container) -> Output:
    """(stdout, stderr) chunks as they come. Attach before start(): attaching to a container that has
    already exited waits forever. (With a TTY, all output arrives as stdout.)"""
    return container.attach(stdout=True, stderr=True, stream=True, logs=True, demux=True)


def _copy_output(output: Output, prefix: bytes = b"") -> None:
    """The container's stdout to ours and its stderr to ours, live."""
    for out, err in output:
        for data, stream in ((out, sys.stdout), (err, sys.stderr)):
            if data:
                stream.buffer.write(prefix + data)
                stream.flush()


class _Signals:
    """While entered, SIGINT/SIGTERM raise Interrupted once; during cleanup further ones are ignored, so
    cleanup finishes. Inside held(), the first signal waits until the engine call returns: the engine
    finishes a create whose request was cut short, so the container would appear after our removal by
    name and be left behind. A second signal there raises at once (the engine may be hung)."""

    def __init__(self) -> None:
        self._holding = False
        self._pending: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)

    def _handle(self, signum: int, _frame: object) -> None:
        if self._holding and self._pending is None:
            self._pending = signum
            return
        _ignore_signals()
        raise Interrupted(signum)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
            if self._pending is not None:
                _ignore_signals()
                raise Interrupted(self._pending)


def _ignore_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def _remove_container(client: DockerClient, name: str) -> None:
    """Force-remove by name. If the engine refuses, try again, then say what was left rather than leave
    it silently (a lost daemon is reported by the caller)."""
    from docker.errors import APIError, NotFound
    from requests.exceptions import RequestException

    for attempt in range(1, REMOVE_ATTEMPTS + 1):
        try:
            client.api.remove_container(name, force=True)
            return
        except (NotFound, RequestException):
            return
        except APIError as error:
            if attempt == REMOVE_ATTEMPTS:
                console.info(
                    f"could not remove container {name}: {error.explanation}; `invoke clean` removes it"
                )
            else:
                time.sleep(attempt)


def _quietly(action: Any) -> None:
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    with contextlib.suppress(DockerException, RequestException):
        action()


def _engine_error(error: Exception, spec: RunSpec) -> EngineError:
    text = str(getattr(error, "explanation", None) or error)
    if lacks_nvidia_runtime(text):
        return EngineError(
            f"GPUs were requested but the engine ({engine.endpoint()}) has no NVIDIA runtime",
            NVIDIA_RUNTIME_FIX,
        )
    if engine.PODMAN_REFUSES_CDI in text:
        return EngineError(
            f"the engine ({engine.endpoint()}) is Podman, whose Docker-compatible API cannot attach the CDI "
            f"devices --gpus asked for ({text})",
            "on Podman, run GPU containers with `podman run --device nvidia.com/gpu=all`; tfdock's GPU runs "
            "need Docker with the NVIDIA Container Toolkit; or use --gpus none",
        )
    return EngineError(f"the engine ({engine.endpoint()}) refused {spec.name}: {text}")

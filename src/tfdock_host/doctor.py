"""`invoke doctor`: is this host ready for tfdock? Each check says what it found and, when not ok, the fix.

The decisions (`shm_check`, `disk_check`, `socket_check`, the GPU checks on a `ProbeResult`, ...) are pure
functions, testable without an engine; `run_checks` gathers their inputs from the engine and the host. Nothing
here raises for an unhealthy host: a daemon that cannot be reached is a FAIL row, and the checks that need it
are skipped. Probe containers run with a timeout, carry the doctor task's labels and are always removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import stat
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tfdock_host import engine, gpu_compat, gpus, image
from tfdock_host.engine import NO_NVIDIA_RUNTIME
from tfdock_host.errors import EngineError, UsageError
from tfdock_host.run import RunSpec, task_spec
from tfdock_host.settings import Settings, validated_shm_size

if TYPE_CHECKING:
    from docker import DockerClient

Status = Literal["ok", "warn", "FAIL", "skip"]
OK: Status = "ok"
WARN: Status = "warn"
FAIL: Status = "FAIL"
SKIP: Status = "skip"  # could not be checked because another check failed or an image is missing

ENGINE = "engine"  # the row's name until the engine says what it is: then "engine: rootless Podman"
SOCKET = "engine socket"
BUILDKIT = "BuildKit CLI"
SHM = "/dev/shm size"
DISK = "disk for images"
NVIDIA_RUNTIME = "NVIDIA runtime"
GPUS_IN_CONTAINER = "GPUs in a container"
NVIDIA_DRIVER = "NVIDIA driver"
TENSORFLOW_GPUS = "TensorFlow sees GPUs"
IMAGE_CHECKS = tuple(f"{target} image" for target in image.TARGETS)
# Everything that needs an answer from the daemon, in the order the table shows it.
ENGINE_CHECKS = (DISK, *IMAGE_CHECKS, NVIDIA_RUNTIME, GPUS_IN_CONTAINER, NVIDIA_DRIVER, TENSORFLOW_GPUS)

DEFAULT_SOCKET = Path("/var/run/docker.sock")
GIB = 1024**3
MIN_SHM_BYTES = GIB
# Room for one build of a variant where the engine keeps images: its runtime and dev images (docs/images.md)
# and BuildKit's cache of the wheels (cpu: 1.65 + 1.6 GB, measured). Twice that fits a rebuild beside them.
BUILD_FREE_BYTES = {"cpu": 4 * GIB, "gpu": 12 * GIB}
NVIDIA_SMI_TIMEOUT_S = 60
TENSORFLOW_TIMEOUT_S = 180  # importing TensorFlow takes ~10 s on a warm disk
NO_GPU_WANTED = "no GPU requested; CPU-only is fine"
INSTALL_TOOLKIT_FIX = engine.NVIDIA_RUNTIME_FIX
GPU_DRIVER_FIX = (
    "on a host with an NVIDIA GPU: install its driver (`nvidia-smi` must work on the host) and the NVIDIA "
    "Container Toolkit; or use --gpus none"
)
STATUS_STYLES: Mapping[Status, str] = {OK: "green", WARN: "yellow", FAIL: "bold red", SKIP: "dim"}


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """What a probe container did: its exit code and output, or why the engine would not run it."""

    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    refusal: str = ""


def run_checks(settings: Settings, gpus_spec: str = "") -> list[Check]:
    """Every check, in table order. An invalid --gpus (or tfdock.gpus) raises `GpuSpecError`, as in train."""
    gpu_spec = gpus_spec or settings.gpus
    wanted = gpus_wanted(gpus_spec, settings.gpus)
    # Probed even when no GPU is wanted (failures are then warnings): a GPU host learns it could use them.
    gpu_requests = tuple(gpus.parse(gpu_spec if wanted else "all"))
    checks = [
        _daemon_check(),
        socket_permissions_check(_engine_host()),
        buildkit_check(settings.docker_cli),
        shm_check(settings.shm_size),
    ]
    if checks[0].status != OK:
        return checks + [_needs(name, "the engine", ENGINE) for name in ENGINE_CHECKS]

    from docker.errors import DockerException

    try:
        checks.extend(_engine_checks(engine.connect(), settings, gpu_requests, wanted))
    except (DockerException, OSError) as error:  # requests' errors are OSErrors: the daemon went away
        done = {check.name for check in checks}
        reason = f"the engine failed mid-check: {_last_line(str(error))}"
        checks += [
            Check(name, FAIL, reason, engine.START_DAEMON_HINT) for name in ENGINE_CHECKS if name not in done
        ]
    return checks


def exit_code(checks: Sequence[Check]) -> int:
    return 1 if any(check.status == FAIL for check in checks) else 0


def render(checks: Sequence[Check]) -> None:
    """The checks as a table on stdout; the fix column is filled only for checks that are not ok."""
    from rich.table import Table
    from rich.text import Text

    from tfdock_host import console

    table = Table(title="tfdock doctor", title_justify="left")
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail")
    table.add_column("fix")
    for check in checks:
        # Text, not markup: engine messages contain brackets such as "capabilities: [[gpu]]".
        table.add_row(
            Text(check.name),
            Text(check.status, style=STATUS_STYLES[check.status]),
            Text(check.detail),
            Text("" if check.status == OK else check.fix),
        )
    console.out.print(table)
    counts = {status: sum(check.status == status for check in checks) for status in STATUS_STYLES}
    console.out.print(", ".join(f"{count} {status}" for status, count in counts.items() if count))


# --- decisions: pure functions of what was found ---


def gpus_wanted(gpus_spec: str, configured: str) -> bool:
    """As `invoke train` reads them: --gpus wins over tfdock.gpus, and `none` wants none."""
    return gpus.wants_gpu(gpus.parse(gpus_spec or configured))


def engine_row(kind: str) -> str:
    """The engine row's name: the kind of engine tfdock talks to, as `engine.describe` found it."""
    return f"{ENGINE}: {'rootful Docker' if kind == engine.DOCKER else kind}"


def shm_check(size: str) -> Check:
    """The /dev/shm the tasks give containers: tf.data workers and NCCL need more than Docker's 64m."""
    fix = "set shm_size in invoke.yaml or INVOKE_TFDOCK_SHM_SIZE, e.g. 2g"
    try:
        size = validated_shm_size(size)
    except UsageError as error:
        return Check(SHM, FAIL, error.message, fix)
    if _size_bytes(size) < MIN_SHM_BYTES:
        return Check(SHM, WARN, f"containers get {size}: below 1g, tf.data workers and NCCL run short", fix)
    return Check(SHM, OK, f"containers get {size}")


def disk_check(location: str, free_bytes: int, variant: str) -> Check:
    detail = f"{free_bytes / GIB:.1f} GiB free {location}"
    needed = BUILD_FREE_BYTES[variant]
    fix = (
        "free space: `docker image prune` and `docker builder prune` drop unused images and build cache; "
        "or move the engine's data-root (/etc/docker/daemon.json) to a bigger disk"
    )
    if free_bytes < needed:
        return Check(DISK, FAIL, f"{detail}: a build of the {variant} images needs {needed // GIB} GiB", fix)
    if free_bytes < 2 * needed:
        rebuild = f"below {2 * needed // GIB} GiB, a rebuild beside the old {variant} images may not fit"
        return Check(DISK, WARN, f"{detail}: {rebuild}", fix)
    return Check(DISK, OK, detail)


def freshness_check(target: str, tag: str, state: str) -> Check:
    """A missing or stale image only warns: the tasks build it on first use."""
    name, fix = f"{target} image", f"invoke build --target {target}"
    if state == "missing":
        return Check(name, WARN, f"{tag} is not built (the tasks build it on first use)", fix)
    if state.startswith("foreign:"):
        built_for = state.partition(":")[2]
        return Check(name, FAIL, f"{tag} is built for linux/{built_for}, not this engine's architecture", fix)
    if state == "stale":
        return Check(
            name, WARN, f"{tag} is stale: the Dockerfile or a lock file changed since its build", fix
        )
    return Check(name, OK, f"{tag} is up to date")


def socket_path(docker_host: str) -> Path | None:
    """The daemon's unix socket, or None when DOCKER_HOST points elsewhere (tcp://, ssh://)."""
    if not docker_host:
        return DEFAULT_SOCKET
    return Path(docker_host.removeprefix("unix://")) if docker_host.startswith("unix://") else None


def socket_check(path: Path, mode: int) -> Check:
    shown = f"{path} is {stat.filemode(mode)}"
    if mode & stat.S_IWOTH:
        return Check(
            SOCKET,
            FAIL,
            f"{shown}: world-writable, so anyone on this host can become root through it",
            f"sudo chmod 660 {path}; and SocketMode=0660 in the systemd docker.socket unit, so a restart "
            "does not undo it",
        )
    return Check(SOCKET, OK, shown)


def nvidia_runtime_check(runtimes: Collection[str], probe: ProbeResult | None) -> Check:
    """Registered as a runtime, or (Docker >= 19.03) the engine takes GPU requests through the NVIDIA hook."""
    if "nvidia" in runtimes:
        return Check(NVIDIA_RUNTIME, OK, "the engine has the nvidia runtime")
    if probe is None:
        return Check(
            NVIDIA_RUNTIME,
            SKIP,
            "no nvidia runtime registered, and no local image to try a GPU request in",
            "invoke build --target runtime",
        )
    if NO_NVIDIA_RUNTIME in probe.refusal:
        return Check(
            NVIDIA_RUNTIME, FAIL, f"the engine refuses GPU requests: {probe.refusal}", INSTALL_TOOLKIT_FIX
        )
    return Check(NVIDIA_RUNTIME, OK, "the engine accepts GPU requests (the NVIDIA hook is on its PATH)")


def gpus_in_container_check(probe: ProbeResult | None) -> Check:
    """nvidia-smi's GPU table (gpu_compat.NVIDIA_SMI_QUERY) in a container with the GPU request: the NVIDIA
    hook mounts the tool and the GPUs."""
    if probe is None:
        return Check(
            GPUS_IN_CONTAINER, SKIP, "no local image to run nvidia-smi in", "invoke build --target runtime"
        )
    if NO_NVIDIA_RUNTIME in probe.refusal:
        return _needs(GPUS_IN_CONTAINER, "the NVIDIA runtime", NVIDIA_RUNTIME)
    if "executable file not found" in probe.refusal or probe.exit_code == 127:
        return Check(
            GPUS_IN_CONTAINER,
            FAIL,
            "nvidia-smi not found in the container: the NVIDIA hook injected nothing",
            GPU_DRIVER_FIX,
        )
    if probe.refusal:
        return Check(
            GPUS_IN_CONTAINER, FAIL, f"a GPU container would not start: {probe.refusal}", GPU_DRIVER_FIX
        )
    output = probe.stdout + "\n" + probe.stderr
    if gpu_compat.lost_gpus(output):
        return Check(
            GPUS_IN_CONTAINER,
            FAIL,
            f"nvidia-smi in a GPU container: {gpu_compat.NVML_LOST}: the container has no access to its GPUs "
            "(lost after a `systemctl daemon-reload` where the engine uses the systemd cgroup driver)",
            gpu_compat.NVML_LOST_FIX,
        )
    if 'Field "compute_cap" is not a valid field to query' in output:
        minimum = ".".join(map(str, gpu_compat.MINIMUM_DRIVER[12]))
        return Check(
            GPUS_IN_CONTAINER,
            FAIL,
            "this driver's nvidia-smi cannot report compute_cap: a driver older than any CUDA 12 runs on",
            f"upgrade the host's NVIDIA driver to {minimum} or later; or --gpus none",
        )
    found = gpu_compat.SmiGpu.parse_all(probe.stdout)
    if probe.exit_code == 0 and found:
        return Check(GPUS_IN_CONTAINER, OK, "; ".join(map(str, found)))
    return Check(
        GPUS_IN_CONTAINER,
        FAIL,
        f"nvidia-smi found no GPU (exit {probe.exit_code}): {_last_line(output)}",
        GPU_DRIVER_FIX,
    )


def driver_check(gpus_found: Sequence[gpu_compat.SmiGpu], cuda: str | None) -> Check:
    """The host driver nvidia-smi reported against the CUDA release of the gpu image's wheels."""
    if not gpus_found:
        return _needs(NVIDIA_DRIVER, "a GPU in a container", GPUS_IN_CONTAINER)
    if cuda is None:
        return Check(NVIDIA_DRIVER, WARN, "the gpu lock names no CUDA runtime wheel to compare with")
    support = gpu_compat.driver_support(gpus_found[0].driver, cuda)
    status: Status = {"ok": OK, "warn": WARN, "FAIL": FAIL}[support.level]
    return Check(NVIDIA_DRIVER, status, support.detail, support.fix)


def tensorflow_check(
    tag: str,
    probe: ProbeResult | None,
    gpus_found: Sequence[gpu_compat.SmiGpu] = (),
    locked_tensorflow: str | None = None,
) -> Check:
    """gpu_compat.TENSORFLOW_PROBE in the runtime image, with the GPU request: each GPU's compute capability
    against the build's CUDA targets, and a conv forward/backward and an XLA matmul on it. When TensorFlow
    sees none of the GPUs nvidia-smi listed (or its image is not built), each of those is judged by
    nvidia-smi's compute capability: against the build's targets, else those of TensorFlow's own CUDA wheel
    of the version that ran (a CPU build) or that the gpu lock pins (`locked_tensorflow`)."""
    if probe is None:
        build = "invoke build --target runtime --variant gpu"
        if gpus_found and locked_tensorflow:
            by = f"TensorFlow {locked_tensorflow}'s CUDA wheel (the gpu lock's)"
            targets = gpu_compat.wheel_targets(locked_tensorflow)
            return _judged_by_capability(f"{tag} is not built", gpus_found, targets, by, SKIP, build)
        return Check(TENSORFLOW_GPUS, SKIP, f"{tag} is not built", build)
    if probe.refusal:
        return Check(
            TENSORFLOW_GPUS, FAIL, f"{tag} would not start with GPUs: {probe.refusal}", GPU_DRIVER_FIX
        )
    report = gpu_compat.ProbeReport.parse(probe.stdout) if probe.exit_code == 0 else None
    if report is None:
        reason = _last_line(probe.stderr)
        return Check(
            TENSORFLOW_GPUS,
            FAIL,
            f"TensorFlow in {tag} failed (exit {probe.exit_code}): {reason}",
            GPU_DRIVER_FIX,
        )
    if not report.gpus:
        # TensorFlow's last word on stderr says why ("Cannot dlopen some GPU libraries ...").
        reason = gpu_compat.tensorflow_reason(probe.stderr) or "TensorFlow logged no reason"
        seen = f"{report.build} in {tag} sees no GPU: {reason}"
        if not gpus_found:
            return Check(TENSORFLOW_GPUS, FAIL, seen, GPU_DRIVER_FIX)
        if report.cuda:
            targets, by = report.targets, "its own targets"
        else:
            targets = gpu_compat.wheel_targets(report.tensorflow)
            by = f"TensorFlow {report.tensorflow}'s CUDA wheel (the gpu variant)"
        return _judged_by_capability(seen, gpus_found, targets, by, FAIL, GPU_DRIVER_FIX)
    rows: list[tuple[Status, str, str]] = [
        _gpu_row(index, gpu, report.targets) for index, gpu in enumerate(report.gpus)
    ]
    if report.profiling == "admin-only":
        rows.append(
            (
                WARN,
                "GPU profiling is for admins only (CUPTI: a --profile trace has no GPU)",
                gpu_compat.PROFILING_FIX,
            )
        )
    status = next((level for level in (FAIL, WARN) if any(row[0] == level for row in rows)), OK)
    fixes = list(dict.fromkeys(fix for level, _, fix in rows if level != OK and fix))
    return Check(
        TENSORFLOW_GPUS,
        status,
        f"{report.build} in {tag}: " + "; ".join(detail for _, detail, _ in rows),
        "; ".join(fixes),
    )


def _judged_by_capability(
    found: str,
    gpus_found: Sequence[gpu_compat.SmiGpu],
    targets: Sequence[str] | None,
    by: str,
    status: Status,
    fix: str,
) -> Check:
    """Whether `targets` have kernels for each GPU nvidia-smi listed, by its compute capability; FAIL when
    one has none, else `status` with `fix` (TensorFlow did not see them, or its image is not built)."""
    verdicts: list[str] = []
    fixes: list[str] = []
    for gpu in gpus_found:
        if gpu.capability is None or targets is None:
            verdicts.append(
                f"GPU {gpu.index} {gpu.name}: not judged (no compute capability or known targets)"
            )
            continue
        support = gpu_compat.kernel_support(gpu.capability, targets)
        verdicts.append(f"GPU {gpu.index} {gpu.name} ({support.detail}; by {by})")
        if support.level == "FAIL" and support.fix not in fixes:
            fixes.append(support.fix)
    return Check(
        TENSORFLOW_GPUS, FAIL if fixes else status, "; ".join([found, *verdicts]), "; ".join(fixes or [fix])
    )


def _gpu_row(index: int, gpu: gpu_compat.Gpu, targets: Sequence[str]) -> tuple[Status, str, str]:
    """(status, detail, fix) of one GPU the probe found."""
    name = f"GPU {index} {gpu.name}"
    if gpu.capability is None:
        return WARN, f"{name}: no compute capability reported", ""
    support = gpu_compat.kernel_support(gpu.capability, targets)
    ran = f"conv {gpu.conv}, XLA {gpu.xla}"
    status: Status = {"ok": OK, "warn": WARN, "FAIL": FAIL}[support.level]
    if gpu.conv != "ok" or gpu.xla != "ok":
        status = FAIL
    return status, f"{name} ({support.detail}): {ran}", support.fix or GPU_DRIVER_FIX


def gpu_verdict(check: Check, wanted: bool) -> Check:
    """A failed GPU check fails doctor only when GPUs are wanted; a CPU-only host just gets a warning."""
    if wanted or check.status != FAIL:
        return check
    return Check(check.name, WARN, f"{NO_GPU_WANTED} ({check.detail})", f"for GPU runs: {check.fix}")


# --- gathering: the engine and the host ---


def _daemon_check() -> Check:
    try:
        described = engine.current()
    except EngineError as error:
        return Check(ENGINE, FAIL, error.message, error.hint)
    return Check(engine_row(described.kind), OK, described.summary())


def _engine_host() -> str:
    try:
        return engine.endpoint().host
    except EngineError:  # a missing context: the daemon check names it
        return ""


def buildkit_check(preferred_cli: str) -> Check:
    try:
        cli = engine.buildkit_cli(preferred_cli)
    except EngineError as error:
        return Check(BUILDKIT, FAIL, error.message, error.hint)
    return Check(BUILDKIT, OK, f"{cli} builds with BuildKit")


def socket_permissions_check(docker_host: str) -> Check:
    path = socket_path(docker_host)
    if path is None:
        return Check(SOCKET, SKIP, f"DOCKER_HOST={docker_host} is not a unix socket")
    try:
        return socket_check(path, path.stat().st_mode)
    except OSError as error:
        return Check(SOCKET, SKIP, f"cannot stat {path}: {error.strerror}", f"see the {ENGINE!r} check")


def _engine_checks(
    client: DockerClient, settings: Settings, gpu_requests: tuple[gpus.GpuRequest, ...], wanted: bool
) -> Iterator[Check]:
    info = client.info()
    yield disk_check(*_image_store_space(info.get("DockerRootDir", "")), settings.variant)
    for target in image.TARGETS:
        state = image.freshness(settings, settings.variant, target)
        yield freshness_check(target, image.latest_tag(settings, settings.variant, target), state)
    yield from _gpu_checks(client, settings, info.get("Runtimes") or {}, gpu_requests, wanted)


def _image_store_space(docker_root: str) -> tuple[str, int]:
    """Free bytes where the engine keeps images; the root fs when that is not on this host (a VM, remote)."""
    if docker_root and Path(docker_root).exists():
        return f"in {docker_root}", shutil.disk_usage(docker_root).free
    elsewhere = f"on / (the engine's {docker_root or 'data-root'} is not on this host)"
    return elsewhere, shutil.disk_usage("/").free


def _gpu_checks(
    client: DockerClient,
    settings: Settings,
    runtimes: Collection[str],
    gpu_requests: tuple[gpus.GpuRequest, ...],
    wanted: bool,
) -> list[Check]:
    candidates = [settings.base_image, image.latest_tag(settings, settings.variant, "runtime")]
    probe_image = next((tag for tag in candidates if _exists(client, tag)), None)
    smi = None
    if probe_image:
        spec = _probe_spec(probe_image, gpu_compat.NVIDIA_SMI_QUERY, gpu_requests)
        smi = _probe(client, spec, NVIDIA_SMI_TIMEOUT_S, entrypoint=["nvidia-smi"])
    runtime = nvidia_runtime_check(runtimes, smi)
    in_container = gpus_in_container_check(smi)
    gpus_found = gpu_compat.SmiGpu.parse_all(smi.stdout) if smi and in_container.status == OK else ()
    gpu_lock = image.lock_files("gpu")[0]
    cuda = gpu_compat.lock_cuda(gpu_lock.read_text()) if gpu_lock.is_file() else None
    checks = [runtime, in_container, driver_check(gpus_found, cuda)]
    if not wanted:  # importing TensorFlow is slow, and without a GPU request it has nothing to find
        checks.append(
            Check(TENSORFLOW_GPUS, WARN, NO_GPU_WANTED, "to check GPU runs: invoke doctor --gpus all")
        )
    elif runtime.status != OK:
        checks.append(_needs(TENSORFLOW_GPUS, "the NVIDIA runtime", NVIDIA_RUNTIME))
    else:
        tag = image.latest_tag(settings, image.variant_for(settings, wants_gpus=True), "runtime")
        spec = _probe_spec(tag, ["python", "-c", gpu_compat.TENSORFLOW_PROBE], gpu_requests)
        tensorflow = _probe(client, spec, TENSORFLOW_TIMEOUT_S) if _exists(client, tag) else None
        locked = gpu_compat.lock_tensorflow(gpu_lock.read_text()) if gpu_lock.is_file() else None
        checks.append(tensorflow_check(tag, tensorflow, gpus_found, locked))
    return [gpu_verdict(check, wanted) for check in checks]


def _probe_spec(tag: str, command: list[str], gpu_requests: tuple[gpus.GpuRequest, ...]) -> RunSpec:
    # No tty, so stdout and stderr stay apart.
    return dataclasses.replace(task_spec("doctor", tag, command, gpus=gpu_requests), tty=False)


def _probe(
    client: DockerClient, spec: RunSpec, timeout_s: int, entrypoint: list[str] | None = None
) -> ProbeResult:
    """Run a probe container to completion within timeout_s; it is removed whatever happens."""
    from docker.errors import APIError, DockerException
    from requests.exceptions import RequestException

    kwargs = spec.create_kwargs()
    if entrypoint:
        kwargs["entrypoint"] = entrypoint
    try:
        try:
            container = engine.create_container(client, kwargs)
        except EngineError as refused:  # e.g. Podman with no CDI spec: a failed row, not the end of doctor
            return ProbeResult(refusal=refused.message)
        container.start()
        exit_code = int(container.wait(timeout=timeout_s)["StatusCode"])
        return ProbeResult(
            exit_code=exit_code,
            stdout=container.logs(stdout=True, stderr=False).decode(errors="replace"),
            stderr=container.logs(stdout=False, stderr=True).decode(errors="replace"),
        )
    except APIError as error:
        return ProbeResult(refusal=str(error.explanation or error))
    except RequestException as error:
        # docker-py reports a read timeout on a unix socket as a ConnectionError; others: a dead daemon.
        if "timed out" not in str(error):
            raise
        return ProbeResult(refusal=f"no result within {timeout_s} s")
    finally:
        # By name: create() may have made the container before failing.
        with contextlib.suppress(DockerException, RequestException):
            client.api.remove_container(spec.name, force=True)


def _exists(client: DockerClient, tag: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    return True


def _needs(name: str, what: str, check: str) -> Check:
    return Check(name, SKIP, f"needs {what}", f"fix the {check!r} check first")


def _size_bytes(size: str) -> int:
    """A validated size (`2g`, `512m`, `1073741824`) in bytes; Docker's units are binary."""
    units = {"b": 1, "k": 1024, "m": 1024**2, "g": GIB}
    return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"

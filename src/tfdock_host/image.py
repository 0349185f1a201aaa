"""The project image: its tags, its content hash, and a BuildKit build through the docker CLI.

The docker SDK cannot drive BuildKit (no cache or secret mounts), so builds run the CLI; everything else
(inspecting labels, deciding staleness) goes through the SDK. An image is stale when its content-hash label
differs from the hash of the Dockerfile and the lock files it installs: source changes never make it stale,
because every local task bind-mounts src/.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import os
import re
import subprocess
from collections import defaultdict, deque
from pathlib import Path

from tfdock_host import console, engine
from tfdock_host.engine import connect
from tfdock_host.errors import BuildError, UsageError
from tfdock_host.lock import ARCHITECTURES, IMAGE_LOCKS, lock_name
from tfdock_host.run import IMAGE_USER_IDS_WHEN_ROOT
from tfdock_host.settings import ROOT, VARIANTS, Settings

DOCKERFILE = ROOT / "docker" / "Dockerfile"
# Install each lock in the build (docker/Dockerfile runs them): part of the content hash.
INSTALL_SCRIPTS = (ROOT / "docker" / "install-lock.sh", ROOT / "docker" / "unreferenced_libraries.py")
HASH_LABEL = "io.tfdock.content-hash"
ARCH_LABEL = "io.tfdock.architecture"
TARGETS = ("runtime", "dev")
CA_BUNDLE_VARIABLES = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
FAILED_STEP_LINES = 25


def lock_files(variant: str, arch: str = "amd64") -> list[Path]:
    """The locks an image of this variant installs on this architecture (Docker's name: amd64, arm64)."""
    return [ROOT / "requirements" / f"{lock_name(name, arch)}.txt" for name in (f"runtime-{variant}", "dev")]


def content_hash(variant: str, arch: str = "amd64") -> str:
    """sha256 over what decides the image's layers below the source: Dockerfile, its install scripts,
    .dockerignore, lock files."""
    digest = hashlib.sha256()
    for path in [DOCKERFILE, *INSTALL_SCRIPTS, ROOT / ".dockerignore", *lock_files(variant, arch)]:
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def variant_for(settings: Settings, wants_gpus: bool) -> str:
    return settings.variant_for(wants_gpus)


def latest_tag(settings: Settings, variant: str, target: str) -> str:
    """The moving tag the tasks run: `tfdock:latest-cpu`, `tfdock:latest-gpu-dev`; with a platform set,
    its architecture too (`tfdock:latest-cpu-arm64`), so a build for another never takes the engine's tag."""
    return f"{settings.image}:latest-{variant}{'-dev' if target == 'dev' else ''}{_platform_suffix(settings)}"


def _platform_suffix(settings: Settings) -> str:
    return f"-{settings.platform.split('/')[1]}" if settings.platform else ""


def engine_arch() -> str:
    """The engine's own architecture, in Docker's names (amd64, arm64)."""
    return str(connect().version().get("Arch", ""))


def target_arch(settings: Settings) -> str:
    """The architecture the tasks build and run: the platform setting's, else the engine's own."""
    return settings.platform.split("/")[1] if settings.platform else engine_arch()


@dataclasses.dataclass(frozen=True)
class BuildRequest:
    variant: str
    target: str
    base_image: str
    arch: str = "amd64"
    ca_bundle: Path | None = None
    no_cache: bool = False
    extra_tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise UsageError(f"unknown variant {self.variant!r}", f"use one of: {', '.join(VARIANTS)}")
        if self.target not in TARGETS:
            raise UsageError(f"unknown target {self.target!r}", f"use one of: {', '.join(TARGETS)}")
        if self.arch not in ARCHITECTURES:
            raise UsageError(
                f"tfdock has no locks for linux/{self.arch}",
                f"build for one of: {', '.join(f'linux/{arch}' for arch in ARCHITECTURES)} (--platform)",
            )
        if f"runtime-{self.variant}" not in IMAGE_LOCKS[self.arch]:
            raise UsageError(
                f"the {self.variant} variant has no linux/{self.arch} lock: PyPI's aarch64 TensorFlow is a "
                "CPU build",
                "build --variant cpu for arm64; for GPUs use an amd64 host (docs/engines.md#architectures)",
            )


def resolve_ca_bundle(explicit: str = "", configured: str = "") -> Path | None:
    """The CA bundle pip must trust: --ca-cert, else invoke.yaml, else the first of CA_BUNDLE_VARIABLES."""
    for origin, value in [
        ("--ca-cert", explicit),
        ("tfdock.ca_bundle", configured),
        *((name, os.environ.get(name, "")) for name in CA_BUNDLE_VARIABLES),
    ]:
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise UsageError(
                    f"CA bundle {value} (from {origin}) is not a readable file",
                    "point it at your proxy's PEM bundle, e.g. /etc/ssl/certs/ca-certificates.crt",
                )
            return path
    return None


def build_args(settings: Settings, request: BuildRequest) -> list[str]:
    """The `docker build` command line (without the CLI itself): plain data, testable without an engine."""
    uid, gid = _image_user_ids()
    revision, created = _git_revision()
    version = _project_version()
    suffix = "-dev" if request.target == "dev" else ""
    tags = [
        latest_tag(settings, request.variant, request.target),
        f"{settings.image}:{version}-{request.variant}{suffix}-{revision[:7]}{_platform_suffix(settings)}",
        *request.extra_tags,
    ]
    labels = {
        "org.opencontainers.image.title": settings.image,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.version": version,
        "io.tfdock.tensorflow-version": tensorflow_version(request.variant),
        "io.tfdock.target": request.target,
        ARCH_LABEL: request.arch,
        HASH_LABEL: content_hash(request.variant, request.arch),
    }
    args = ["build", "--progress", "plain", "-f", str(DOCKERFILE), "--target", request.target]
    # BuildKit sets TARGETARCH from it; the Dockerfile installs that architecture's locks.
    args += ["--platform", f"linux/{request.arch}"]
    for name, value in [
        ("BASE_IMAGE", request.base_image),
        ("INSTALLER_IMAGE", settings.installer_image or request.base_image),
        ("VARIANT", request.variant),
        ("UID", str(uid)),
        ("GID", str(gid)),
    ]:
        args += ["--build-arg", f"{name}={value}"]
    for key, value in labels.items():
        args += ["--label", f"{key}={value}"]
    for tag in tags:
        args += ["--tag", tag]
    if request.ca_bundle:
        args += ["--secret", f"id=ca_bundle,src={request.ca_bundle}"]
    if request.no_cache:
        args.append("--no-cache")
    return [*args, str(ROOT)]


def build(settings: Settings, request: BuildRequest) -> str:
    """Build with BuildKit, streaming the log; returns the tag. A failure shows the failed step's tail."""
    connect()  # a stopped daemon is one clear line, not a BuildKit stack dump
    command = engine.build_command(settings.docker_cli, build_args(settings, request))
    tag = latest_tag(settings, request.variant, request.target)
    console.info(
        f"building {tag} for linux/{request.arch} from {request.base_image} with {command[0]} on "
        f"{engine.endpoint()}"
    )
    _run_build(command, tag)
    return tag


def freshness(settings: Settings, variant: str, target: str) -> str:
    """'fresh', 'missing', 'stale' or 'foreign:<arch>' (built for another architecture than the tasks run)
    for the image the tasks would run."""
    from docker.errors import ImageNotFound

    arch = target_arch(settings)
    try:
        image = connect().images.get(latest_tag(settings, variant, target))
    except ImageNotFound:
        return "missing"
    if image.attrs.get("Architecture") != arch:
        return f"foreign:{image.attrs.get('Architecture')}"
    return "fresh" if image.labels.get(HASH_LABEL) == content_hash(variant, arch) else "stale"


def ensure(settings: Settings, variant: str, target: str) -> str:
    """The image's tag, built first when it is missing or stale; one of another architecture never runs."""
    tag = latest_tag(settings, variant, target)
    state = freshness(settings, variant, target)
    if state.startswith("foreign:"):
        built_for = state.partition(":")[2]
        raise UsageError(
            f"image {tag} is built for linux/{built_for}; the tasks here run linux/{target_arch(settings)}",
            f"rebuild it for this engine: invoke build --target {target} (other architectures: "
            "docs/engines.md#architectures)",
        )
    if state != "fresh":
        console.info(f"image {tag} is {state}")
        build(
            settings,
            BuildRequest(
                variant=variant,
                target=target,
                base_image=settings.base_image,
                arch=target_arch(settings),
                ca_bundle=resolve_ca_bundle(configured=settings.ca_bundle),
            ),
        )
    return tag


def tensorflow_version(variant: str) -> str:
    # The same pin on every architecture (lock.py constrains the aarch64 locks by the x86_64 ones).
    pinned = re.search(
        r"^tensorflow(?:-cpu)?(?:\[[^]]*\])?==([\w.]+)", lock_files(variant)[0].read_text(), re.M
    )
    return pinned.group(1) if pinned else "unknown"


def _run_build(command: list[str], tag: str) -> None:
    step_names: dict[str, str] = {}
    step_lines: dict[str, deque[str]] = defaultdict(lambda: deque(maxlen=FAILED_STEP_LINES))
    failed_step = ""
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env={**engine.endpoint().cli_environment(os.environ), "DOCKER_BUILDKIT": "1"},
    )
    assert process.stdout is not None
    # A spinner with the current step on a terminal; BuildKit's plain lines in logs and CI.
    spinner = console.err.status(f"building {tag}") if console.err.is_terminal else contextlib.nullcontext()
    with spinner as status:
        for raw_line in process.stdout:
            line = raw_line.rstrip("\n")
            step = re.match(r"#(\d+) (.*)", line)
            if step:
                step_id, text = step.groups()
                step_lines[step_id].append(text)
                if text.startswith("["):
                    step_names[step_id] = text
                if text.startswith("ERROR"):
                    failed_step = step_id
            if status is None:
                console.err.out(line, highlight=False)
            elif step and step.group(1) in step_names:
                status.update(f"[bold]{step_names[step.group(1)][:100]}[/]  [dim]{line[-80:]}[/]")
    if process.wait() != 0:
        name = step_names.get(failed_step, "")
        for text in step_lines.get(failed_step, []):
            console.err.out(f"  {text}", highlight=False)
        raise BuildError(
            f"building {tag} failed" + (f" at {name}" if name else f" (docker exit {process.returncode})"),
            "the failing step's last lines are above; `invoke build --no-cache` rules out a bad cached layer",
        )
    console.info(f"built {tag}")


def _image_user_ids() -> tuple[int, int]:
    """The invoking user's ids for the image's user; root gets a non-root image user all the same."""
    uid, gid = os.getuid(), os.getgid()
    return (uid, gid) if uid != 0 else IMAGE_USER_IDS_WHEN_ROOT


def _git_revision() -> tuple[str, str]:
    """(commit, its ISO date): a reproducible `created`, so an unchanged tree builds an identical image."""
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%H %cI"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        out = []
    if len(out) == 2:
        return out[0], out[1]
    return "unknown", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _project_version() -> str:
    found = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    return found.group(1) if found else "0"

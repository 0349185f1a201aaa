"""The container engine: which one (resolved once, as the docker CLI resolves it), what it is, one connection
for the SDK, and the CLI (or, for Podman, `podman`) that builds on that same engine.

The engine is DOCKER_HOST, else the context DOCKER_CONTEXT names, else the CLI's current context
(`currentContext` in ~/.docker/config.json, or $DOCKER_CONFIG/config.json), else the default socket. The SDK
client, every CLI subprocess (`cli_environment`), doctor and every engine error use that one `Endpoint`.
What the engine is (`describe`: Docker rootful or rootless, Docker Desktop, Podman) decides, in
`container_identity` alone, which user containers run as, so that files on bind mounts are the user's.

Engine failures become an `EngineError` whose hint says what to do; nothing here prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfdock_host.errors import EngineError
from tfdock_host.gpus import ALL_GPUS, GpuRequest

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

DEFAULT_HOST = "unix:///var/run/docker.sock"
DEFAULT_CONTEXT = "default"
NO_SOCKET_ACCESS_HINT = "join the docker group (`sudo usermod -aG docker $USER`, then log in again)"
START_DAEMON_HINT = (
    "start it (`sudo systemctl start docker`, or `sudo dockerd &`) or point DOCKER_HOST at one"
)
START_ROOTLESS_DOCKER_HINT = (
    "start your rootless dockerd (`systemctl --user start docker`, or `dockerd-rootless.sh &`)"
)
START_PODMAN_HINT = (
    "start Podman's API service (`systemctl --user start podman.socket`, or `podman system service -t 0 &`)"
)
# What an engine without the NVIDIA runtime answers a GPU request with, and the fix: for every task and
# for doctor alike.
NO_NVIDIA_RUNTIME = 'could not select device driver ""'
NVIDIA_RUNTIME_FIX = (
    "install the NVIDIA Container Toolkit "
    "(https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html), run "
    "`sudo nvidia-ctk runtime configure --runtime=docker` and restart the daemon; or use --gpus none"
)
# CDI (Container Device Interface): how Podman attaches GPUs, from specs nvidia-ctk writes here.
CDI_KIND = "nvidia.com/gpu"
CDI_SPEC_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))
# What Podman 4.3's Docker API answers a CDI device with: it takes the name for a device node's path.
PODMAN_REFUSES_CDI = f"stat {CDI_KIND}="
# The engine kinds `describe` tells apart.
DOCKER = "Docker"
ROOTLESS_DOCKER = "rootless Docker"
DOCKER_DESKTOP = "Docker Desktop"
PODMAN = "Podman"
ROOTLESS_PODMAN = "rootless Podman"
ROOTLESS_KINDS = (ROOTLESS_DOCKER, ROOTLESS_PODMAN)
# The image's user when root runs a rootful engine (root's own ids would make a root-owned image user):
# the Dockerfile's ARG UID/GID defaults (a host test holds them equal), and the Kubernetes pods' user.
IMAGE_USER_IDS_WHEN_ROOT = (1000, 1000)


def lacks_nvidia_runtime(engine_message: str) -> bool:
    """Whether the engine refused a GPU request because it has no NVIDIA runtime."""
    return NO_NVIDIA_RUNTIME in engine_message


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where the engine is, and why that one: `origin` is DOCKER_HOST, DOCKER_CONTEXT, the config file
    whose currentContext named it, or "default"."""

    host: str
    context: str = DEFAULT_CONTEXT
    origin: str = DEFAULT_CONTEXT
    tls_dir: Path | None = None  # ca.pem, cert.pem, key.pem of a TLS context
    tls_verify: bool = False

    def __str__(self) -> str:
        if self.origin == "DOCKER_HOST":
            return f"{self.host} (DOCKER_HOST)"
        return f"context {self.context!r} at {self.host}" + (
            f" (from {self.origin})" if self.origin != DEFAULT_CONTEXT else ""
        )

    @property
    def socket(self) -> Path | None:
        """The engine's unix socket; None for tcp:// and ssh:// engines."""
        return Path(self.host.removeprefix("unix://")) if self.host.startswith("unix://") else None

    def client_kwargs(self, environ: Mapping[str, str]) -> dict[str, Any]:
        """`DockerClient` arguments: base_url, and TLS as the CLI would use it."""
        from docker.tls import TLSConfig
        from docker.utils import kwargs_from_env

        if self.origin == "DOCKER_HOST":
            return {
                **kwargs_from_env(environment=dict(environ)),
                "use_ssh_client": self.host.startswith("ssh://"),
            }
        kwargs: dict[str, Any] = {"base_url": self.host, "use_ssh_client": self.host.startswith("ssh://")}
        if self.tls_dir is not None:
            files = {name: self.tls_dir / f"{name}.pem" for name in ("ca", "cert", "key")}
            kwargs["tls"] = TLSConfig(
                client_cert=(str(files["cert"]), str(files["key"])) if files["cert"].is_file() else None,
                ca_cert=str(files["ca"]) if files["ca"].is_file() else None,
                verify=self.tls_verify,
            )
        return kwargs

    def cli_environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The environment for a docker CLI subprocess, so that it talks to this same engine."""
        env = {key: value for key, value in environ.items() if key not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
        if self.origin == "DOCKER_HOST":
            env["DOCKER_HOST"] = self.host
        else:
            env["DOCKER_CONTEXT"] = self.context
        return env


def docker_config_dir(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("DOCKER_CONFIG") or Path.home() / ".docker").expanduser()


def resolve_endpoint(environ: Mapping[str, str] | None = None) -> Endpoint:
    """The engine the docker CLI would use, from DOCKER_HOST, DOCKER_CONTEXT or the current context."""
    environ = os.environ if environ is None else environ
    if environ.get("DOCKER_HOST"):
        return Endpoint(environ["DOCKER_HOST"], context="", origin="DOCKER_HOST")
    config_dir = docker_config_dir(environ)
    name, origin = environ.get("DOCKER_CONTEXT", ""), "DOCKER_CONTEXT"
    if not name:
        name, origin = _current_context(config_dir / "config.json"), str(config_dir / "config.json")
    if name == DEFAULT_CONTEXT:
        return Endpoint(DEFAULT_HOST, origin=DEFAULT_CONTEXT if origin != "DOCKER_CONTEXT" else origin)
    # The CLI's context store: meta/<sha256 of the name>/meta.json, TLS files in tls/<sha256>/docker/.
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta_file = config_dir / "contexts" / "meta" / digest / "meta.json"
    try:
        endpoint = json.loads(meta_file.read_text())["Endpoints"]["docker"]
        host = str(endpoint["Host"])
    except (OSError, ValueError, KeyError, TypeError):
        raise EngineError(
            f"docker context {name!r} (from {origin}) is not in {config_dir / 'contexts'}",
            "`docker context ls` lists the contexts; `docker context use NAME` picks one, or set DOCKER_HOST",
        ) from None
    tls_dir = config_dir / "contexts" / "tls" / digest / "docker"
    return Endpoint(
        host,
        context=name,
        origin=origin,
        tls_dir=tls_dir if tls_dir.is_dir() else None,
        tls_verify=not endpoint.get("SkipTLSVerify", False),
    )


def _current_context(config_file: Path) -> str:
    try:
        return str(json.loads(config_file.read_text()).get("currentContext") or DEFAULT_CONTEXT)
    except FileNotFoundError:
        return DEFAULT_CONTEXT
    except (OSError, ValueError, AttributeError) as error:
        raise EngineError(
            f"cannot read the docker CLI's config {config_file}: {error}", "fix or remove that file"
        ) from None


@functools.cache
def endpoint() -> Endpoint:
    """The engine of this process: resolved once."""
    return resolve_endpoint()


@functools.cache
def connect() -> DockerClient:
    """A client to the resolved engine, which answered a ping."""
    import docker
    from docker.errors import DockerException

    where = endpoint()
    try:
        client = docker.DockerClient(timeout=120, **where.client_kwargs(os.environ))
        client.ping()
    except DockerException as error:
        reason = _root_cause(error)
        raise EngineError(f"cannot reach the engine {where}: {reason}", _start_hint(where, reason)) from None
    return client


def _start_hint(where: Endpoint, reason: str) -> str:
    socket = str(where.socket or "")
    if "podman" in socket:
        return START_PODMAN_HINT
    if socket.startswith("/run/user/"):
        return START_ROOTLESS_DOCKER_HINT
    if "Permission denied" in reason and socket == DEFAULT_HOST.removeprefix("unix://"):
        return NO_SOCKET_ACCESS_HINT
    return START_DAEMON_HINT


@dataclasses.dataclass(frozen=True)
class ContainerIdentity:
    """Who a container runs as, decided by the engine kind so that files on bind mounts are the user's:
    `user` for --user (None: the image's), `userns_mode` (Podman's keep-id), and whose the writable host
    dirs must be before the run (None: left as they are)."""

    user: str | None
    userns_mode: str | None = None
    writable_owner: tuple[int, int] | None = None
    files_owned_by: str = ""


def container_identity(
    kind: str, uid: int, gid: int, engine_owner: tuple[int, int] | None = None
) -> ContainerIdentity:
    """The one place that decides the container's user, for the invoking user's ids and (for a rootless
    engine) the ids of the user who runs it, when known (the owner of its socket).

    - rootless Docker: root inside the user namespace is the engine's user on the host, so no other user;
    - rootless Podman: keep-id maps the engine's user to the same id inside, and the container runs as it;
    - rootful engines: the invoking user's ids; root gets the image's non-root user, handed the dirs.
    Invoked as root, a rootless engine's user is handed the writable dirs root made.
    """
    owner = engine_owner or (uid, gid)
    handed = owner if uid == 0 and owner[0] != 0 else None
    if kind == ROOTLESS_DOCKER:
        return ContainerIdentity(
            "0:0",
            writable_owner=handed,
            files_owned_by=f"uid {owner[0]} (root in the engine's user namespace)",
        )
    if kind == ROOTLESS_PODMAN:
        return ContainerIdentity(
            f"{owner[0]}:{owner[1]}", "keep-id", handed, files_owned_by=f"uid {owner[0]} (keep-id)"
        )
    if uid == 0:
        image_user = IMAGE_USER_IDS_WHEN_ROOT
        return ContainerIdentity(
            None,
            writable_owner=image_user,
            files_owned_by=f"uid {image_user[0]}, the image's user (handed the dirs)",
        )
    return ContainerIdentity(f"{uid}:{gid}", files_owned_by=f"you (uid {uid})")


@dataclasses.dataclass(frozen=True)
class EngineInfo:
    """What `describe` found: the engine's kind, version and architecture, at its endpoint."""

    endpoint: Endpoint
    kind: str
    version: str
    api_version: str
    architecture: str

    @property
    def podman(self) -> bool:
        return self.kind in (PODMAN, ROOTLESS_PODMAN)

    @property
    def identity(self) -> ContainerIdentity:
        owner = None
        socket = self.endpoint.socket
        if self.kind in ROOTLESS_KINDS and socket is not None:
            with contextlib.suppress(OSError):
                stat = socket.stat()
                owner = (stat.st_uid, stat.st_gid)
        return container_identity(self.kind, os.getuid(), os.getgid(), owner)

    def summary(self) -> str:
        """One line: kind, version, architecture, where, and whose the files on bind mounts will be."""
        return (
            f"{self.kind} {self.version} (API {self.api_version}, {self.architecture}), {self.endpoint}; "
            f"files on bind mounts belong to {self.identity.files_owned_by}"
        )


def describe(client: DockerClient) -> EngineInfo:
    """The engine's kind from its own answers: Podman names itself in the version's components, rootless
    Docker has `name=rootless` among its security options, Docker Desktop in its OperatingSystem."""
    version = client.version()
    info = client.info()
    components = {str(component.get("Name")) for component in version.get("Components") or []}
    if "Podman Engine" in components:
        kind = ROOTLESS_PODMAN if _podman_rootless(client, info) else PODMAN
    elif any("name=rootless" in option for option in info.get("SecurityOptions") or []):
        kind = ROOTLESS_DOCKER
    elif "Docker Desktop" in str(info.get("OperatingSystem", "")):
        kind = DOCKER_DESKTOP
    else:
        kind = DOCKER
    return EngineInfo(
        endpoint=endpoint(),
        kind=kind,
        version=str(version.get("Version", "unknown")),
        api_version=str(version.get("ApiVersion", "unknown")),
        architecture=str(info.get("Architecture") or version.get("Arch") or "unknown"),
    )


def _podman_rootless(client: DockerClient, info: Mapping[str, Any]) -> bool:
    """Podman's compat info leaves `rootless` out of SecurityOptions; its own API says it."""
    if any("name=rootless" in option for option in info.get("SecurityOptions") or []):
        return True
    response = client.api.get(client.api.base_url + "/v4.0.0/libpod/info")
    if response.ok:
        return bool(response.json().get("host", {}).get("security", {}).get("rootless"))
    return False


@functools.cache
def current() -> EngineInfo:
    """What the resolved engine is: asked once."""
    return describe(connect())


def cdi_devices(requests: Sequence[GpuRequest]) -> list[str]:
    """`--gpus` as CDI device names, the way NVIDIA recommends for Podman: all, or each GPU by index/UUID."""
    names: list[str] = []
    for request in requests:
        if request.device_ids:
            names += [f"{CDI_KIND}={device}" for device in request.device_ids]
        elif request.count == ALL_GPUS:
            names.append(f"{CDI_KIND}=all")
        else:
            names += [f"{CDI_KIND}={index}" for index in range(request.count)]
    return names


def require_cdi_spec(spec_dirs: Sequence[Path] = CDI_SPEC_DIRS) -> None:
    """A CDI spec for NVIDIA GPUs must exist (nvidia-ctk writes it); without one, one line naming the fix."""
    for directory in spec_dirs:
        for spec in sorted(directory.glob("*")) if directory.is_dir() else []:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                if spec.suffix in (".yaml", ".json") and CDI_KIND in spec.read_text():
                    return
    raise EngineError(
        f"GPUs were requested but no CDI spec for {CDI_KIND} is in {' or '.join(map(str, spec_dirs))}",
        "run `sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml` (NVIDIA Container Toolkit); "
        "or use --gpus none",
    )


def create_container(client: DockerClient, kwargs: Mapping[str, Any]) -> Container:
    """`containers.create(**kwargs)` as the user the engine's kind calls for (`container_identity`), with
    Podman's keep-id, a `userns_mode` the SDK itself only allows as "host": set on the host config the SDK
    built, as `docker run --userns` sends it. On Podman, GPU requests become CDI devices (its Docker API
    ignores device requests); the SDK's DeviceRequest has the count and device IDs cdi_devices reads."""
    # The SDK's own split of create() arguments into the request and its host config (no public twin).
    from docker.models.containers import _create_container_args  # type: ignore[attr-defined]

    identity = current().identity
    arguments = {**kwargs, "user": identity.user}
    if arguments.get("device_requests") and current().podman:
        requests = arguments.pop("device_requests")
        require_cdi_spec()
        arguments["devices"] = [*(arguments.get("devices") or []), *cdi_devices(requests)]
    userns_mode = identity.userns_mode
    if not userns_mode:
        return client.containers.create(**arguments)
    create_args = _create_container_args({**arguments, "version": client.api.api_version})
    create_args["host_config"]["UsernsMode"] = userns_mode
    return client.containers.get(client.api.create_container(**create_args)["Id"])


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


def build_command(preferred_cli: str, docker_build_args: list[str]) -> list[str]:
    """The command that builds on the resolved engine: a BuildKit docker CLI, or for Podman its own CLI
    (Buildah understands cache and secret mounts; the docker CLI's BuildKit cannot build on Podman at all:
    "failed to dial gRPC ... 404"). `docker_build_args` start with "build".

    The user's own Podman service (its socket is theirs) serves the store their local `podman build`
    writes: that one builds, with the secret read in place. Another Podman gets `podman --url`, whose
    remote build hands a secret over inside the build context, where the project's allowlist
    .dockerignore leaves it out: there a CA secret cannot reach the build (docs/engines.md)."""
    if not current().podman:
        return [buildkit_cli(preferred_cli), *docker_build_args]
    podman = shutil.which("podman")
    if podman is None:
        raise EngineError(
            f"the engine ({endpoint()}) is Podman, and building for it needs the podman CLI",
            "install it (apt: podman), or point DOCKER_HOST at a Docker engine",
        )
    socket = endpoint().socket
    own = socket is not None and socket.exists() and socket.stat().st_uid == os.getuid() != 0
    remote = [] if own else ["--url", endpoint().host]
    return [podman, *remote, *podman_build_args(docker_build_args)]


def podman_build_args(docker_build_args: list[str]) -> list[str]:
    """`docker build` arguments as `podman build` takes them: its output is plain already, and it has no
    --progress; the rest (targets, build args, labels, tags, --secret id=...,src=...) is the same."""
    args = list(docker_build_args)
    if args[1:3] == ["--progress", "plain"]:
        del args[1:3]
    return args


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

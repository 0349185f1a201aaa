"""Which engine, and who containers run as on it: resolved as the docker CLI resolves it (no engine needed).

The context store is written here the way `docker context create` lays it out (meta/<sha256>/meta.json,
tls/<sha256>/docker/*.pem); tests/engine/test_engines.py checks the same against real engines.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tfdock_host import engine, gpus
from tfdock_host.errors import EngineError


def write_context(config_dir: Path, name: str, host: str, tls: bool = False) -> None:
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config_dir / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    endpoint = {"Host": host, "SkipTLSVerify": False}
    (meta / "meta.json").write_text(
        json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": endpoint}})
    )
    if tls:
        tls_dir = config_dir / "contexts" / "tls" / digest / "docker"
        tls_dir.mkdir(parents=True)
        for pem in ("ca.pem", "cert.pem", "key.pem"):
            (tls_dir / pem).write_text("not a real certificate\n")


@pytest.fixture
def config_dir(tmp_path):
    write_context(tmp_path, "desktop-linux", "unix:///home/u/.docker/desktop/docker.sock")
    write_context(tmp_path, "remote", "tcp://gpu-box:2376", tls=True)
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "desktop-linux"}))
    return tmp_path


def test_docker_host_wins_over_every_context(config_dir):
    environ = {"DOCKER_HOST": "unix:///run/user/1000/docker.sock", "DOCKER_CONTEXT": "remote"}
    resolved = engine.resolve_endpoint({**environ, "DOCKER_CONFIG": str(config_dir)})
    assert (resolved.host, resolved.origin) == ("unix:///run/user/1000/docker.sock", "DOCKER_HOST")
    assert str(resolved) == "unix:///run/user/1000/docker.sock (DOCKER_HOST)"


def test_docker_context_wins_over_the_current_context_and_brings_its_tls_files(config_dir):
    resolved = engine.resolve_endpoint({"DOCKER_CONTEXT": "remote", "DOCKER_CONFIG": str(config_dir)})
    assert (resolved.context, resolved.host, resolved.origin) == (
        "remote",
        "tcp://gpu-box:2376",
        "DOCKER_CONTEXT",
    )
    tls = resolved.client_kwargs({})["tls"]
    assert tls.ca_cert.endswith("docker/ca.pem") and tls.cert[0].endswith("docker/cert.pem") and tls.verify
    assert str(resolved) == "context 'remote' at tcp://gpu-box:2376 (from DOCKER_CONTEXT)"


def test_the_clis_current_context_is_read_from_its_config(config_dir):
    resolved = engine.resolve_endpoint({"DOCKER_CONFIG": str(config_dir)})
    assert resolved.context == "desktop-linux"
    assert resolved.socket == Path("/home/u/.docker/desktop/docker.sock")
    assert resolved.origin == str(config_dir / "config.json")


def test_no_config_means_the_default_socket(tmp_path):
    resolved = engine.resolve_endpoint({"DOCKER_CONFIG": str(tmp_path)})
    assert (resolved.host, resolved.context) == (engine.DEFAULT_HOST, "default")


def test_a_context_that_does_not_exist_is_one_line_naming_it(config_dir):
    with pytest.raises(EngineError) as raised:
        engine.resolve_endpoint({"DOCKER_CONTEXT": "colima", "DOCKER_CONFIG": str(config_dir)})
    assert (
        "'colima' (from DOCKER_CONTEXT)" in raised.value.message and "docker context ls" in raised.value.hint
    )


def test_the_cli_gets_the_same_engine(config_dir):
    """A CLI subprocess (builds, `docker start -ai`) must not pick another engine than the SDK did."""
    environ = {"DOCKER_CONFIG": str(config_dir), "DOCKER_HOST": ""}
    by_context = engine.resolve_endpoint(environ).cli_environment(environ)
    assert by_context["DOCKER_CONTEXT"] == "desktop-linux" and "DOCKER_HOST" not in by_context
    by_host = engine.Endpoint("tcp://h:2376", context="", origin="DOCKER_HOST")
    assert by_host.cli_environment({"DOCKER_CONTEXT": "remote"}) == {"DOCKER_HOST": "tcp://h:2376"}


@pytest.mark.parametrize(
    ("kind", "uid", "user", "userns", "owner"),
    [
        (engine.DOCKER, 1001, "1001:1002", None, None),
        (engine.DOCKER, 0, None, None, engine.IMAGE_USER_IDS_WHEN_ROOT),
        (engine.DOCKER_DESKTOP, 501, "501:1002", None, None),
        (engine.PODMAN, 1001, "1001:1002", None, None),
        # Root in a rootless engine's user namespace is the engine's user on the host.
        (engine.ROOTLESS_DOCKER, 1001, "0:0", None, None),
        # keep-id maps the user to the same id inside; the container then runs as that id.
        (engine.ROOTLESS_PODMAN, 1001, "1001:1002", "keep-id", None),
    ],
)
def test_the_engine_kind_decides_the_containers_user(kind, uid, user, userns, owner):
    identity = engine.container_identity(kind, uid, 1002)
    assert (identity.user, identity.userns_mode, identity.writable_owner) == (user, userns, owner)
    assert identity.files_owned_by


def test_invoked_as_root_a_rootless_engines_user_gets_the_dirs_and_the_files():
    docker = engine.container_identity(engine.ROOTLESS_DOCKER, 0, 0, engine_owner=(1001, 1001))
    assert (docker.user, docker.writable_owner) == ("0:0", (1001, 1001))
    podman = engine.container_identity(engine.ROOTLESS_PODMAN, 0, 0, engine_owner=(1001, 1001))
    assert (podman.user, podman.userns_mode, podman.writable_owner) == ("1001:1001", "keep-id", (1001, 1001))


def test_podman_builds_with_its_own_cli_without_dockers_progress_flag():
    args = [
        "build",
        "--progress",
        "plain",
        "-f",
        "docker/Dockerfile",
        "--secret",
        "id=ca_bundle,src=/ca.pem",
        ".",
    ]
    assert engine.podman_build_args(args) == [
        "build",
        "-f",
        "docker/Dockerfile",
        "--secret",
        "id=ca_bundle,src=/ca.pem",
        ".",
    ]


@pytest.mark.parametrize(
    ("spec", "devices"),
    [
        ("all", ["nvidia.com/gpu=all"]),
        ("device=0", ["nvidia.com/gpu=0"]),
        ("device=0,2", ["nvidia.com/gpu=0", "nvidia.com/gpu=2"]),
        ("2", ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]),
        ("device=GPU-4f1e", ["nvidia.com/gpu=GPU-4f1e"]),
    ],
)
def test_gpus_as_cdi_devices_for_podman(spec, devices):
    assert engine.cdi_devices(gpus.parse(spec)) == devices


def test_no_cdi_spec_is_one_line_naming_nvidia_ctk(tmp_path):
    (tmp_path / "other.yaml").write_text("kind: vendor.com/fpga\n")
    with pytest.raises(EngineError) as raised:
        engine.require_cdi_spec([tmp_path, tmp_path / "missing"])
    assert "nvidia-ctk cdi generate" in raised.value.hint and str(tmp_path) in raised.value.message
    (tmp_path / "nvidia.yaml").write_text('cdiVersion: "0.5.0"\nkind: nvidia.com/gpu\n')
    engine.require_cdi_spec([tmp_path])

"""The house rules every task's container gets, checked on the RunSpec (plain data, no engine)."""

import json
import os

import pytest

from tfdock_host import gpus, run, settings
from tfdock_host.errors import UsageError
from tfdock_host.settings import ROOT
from tfdock_host.spec import CUDA_CACHE_DIR, HOST_PATHS_VARIABLE, PROGRESS_VARIABLE


@pytest.fixture
def spec(tmp_path):
    return run.task_spec(
        "train",
        "tfdock:latest-cpu",
        ["python", "-m", "tfdock.train"],
        data_dir=tmp_path / "data",
        output_dir=tmp_path / "outputs",
        gpus=tuple(gpus.parse("all")),
    )


def test_data_is_read_only_outputs_writable_project_read_only(spec, tmp_path):
    mounts = {m.target: m for m in spec.mounts}
    assert mounts[run.DATA_DIR].read_only and mounts[run.DATA_DIR].source == tmp_path / "data"
    assert not mounts[run.OUTPUT_DIR].read_only
    assert mounts[run.WORKSPACE].source == ROOT and mounts[run.WORKSPACE].read_only


def test_the_container_is_told_where_each_mount_is_on_the_host(spec, tmp_path):
    # So that its messages name the host's paths (tfdock.cli.as_the_host_sees), never /outputs or /data.
    host_paths = json.loads(spec.environment[HOST_PATHS_VARIABLE])
    assert host_paths == {mount.target: str(mount.source) for mount in spec.mounts}
    assert host_paths[run.OUTPUT_DIR] == str(tmp_path / "outputs") and host_paths[run.WORKSPACE] == str(ROOT)


def test_a_spec_is_plain_data_and_its_run_makes_the_host_dirs_so_docker_never_does_as_root(spec, tmp_path):
    assert not (tmp_path / "data").exists() and not (tmp_path / "outputs").exists()
    run.prepare_host_dirs(spec)
    assert (tmp_path / "data").is_dir() and (tmp_path / "outputs").is_dir()


def test_runs_as_the_invoking_user_or_the_images_user_when_root(spec):
    expected = None if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}"
    assert spec.user == expected


def test_security_defaults_and_no_network(spec):
    kwargs = spec.create_kwargs()
    assert kwargs["cap_drop"] == ["ALL"]
    assert kwargs["security_opt"] == ["no-new-privileges"]
    assert kwargs["network_mode"] == "none"


def test_writable_home_and_caches_for_any_uid(spec):
    env = spec.environment
    assert env["HOME"] == run.CONTAINER_HOME
    for variable in ("KERAS_HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR"):
        assert env[variable].startswith(run.CONTAINER_HOME)
    assert run.CONTAINER_HOME in spec.create_kwargs()["tmpfs"]
    assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"


def test_gpu_runs_keep_cudas_jit_cache_in_the_users_cache_dir_and_cpu_runs_get_none(
    spec, tmp_path, monkeypatch
):
    """Issue 19: HOME is a tmpfs, so without this every GPU run would JIT-compile PTX anew."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    gpu_spec = run.task_spec("train", "img", ["true"], gpus=tuple(gpus.parse("all")))
    (cache,) = [mount for mount in gpu_spec.mounts if mount.target == CUDA_CACHE_DIR]
    assert cache.source == tmp_path / "cache" / "tfdock" / "cuda" and not cache.read_only
    assert gpu_spec.environment["CUDA_CACHE_PATH"] == CUDA_CACHE_DIR
    assert int(gpu_spec.environment["CUDA_CACHE_MAXSIZE"]) == 4 * 2**30
    cpu_spec = run.task_spec("train", "img", ["true"])
    assert CUDA_CACHE_DIR not in {mount.target for mount in cpu_spec.mounts}
    assert not {"CUDA_CACHE_PATH", "CUDA_CACHE_MAXSIZE"} & set(cpu_spec.environment)


def test_a_cpu_quota_reaches_the_sdk_and_no_quota_sets_none(spec):
    assert spec.create_kwargs()["nano_cpus"] is None
    limited = run.task_spec("train", "img", ["true"], nano_cpus=1_500_000_000)
    assert limited.create_kwargs()["nano_cpus"] == 1_500_000_000


def test_progress_is_live_only_with_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert run.task_spec("train", "img", ["true"]).environment[PROGRESS_VARIABLE] == "plain"
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    live = run.task_spec("train", "img", ["true"])
    assert live.tty and live.environment[PROGRESS_VARIABLE] == "live"


def test_gpu_requests_reach_the_sdk_as_device_requests(spec):
    (request,) = spec.create_kwargs()["device_requests"]
    assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]]


def test_every_container_is_labelled_and_uniquely_named(tmp_path):
    names = {run.task_spec("test", "img", ["true"]).name for _ in range(20)}
    assert len(names) == 20
    spec = run.task_spec("test", "img", ["true"])
    assert spec.labels[run.PROJECT_LABEL] == "tfdock" and spec.labels[run.TASK_LABEL] == "test"


def test_published_ports_bind_to_loopback_only():
    spec = run.task_spec("notebook", "img", ["jupyter"], ports={8888: 8888})
    assert spec.create_kwargs()["ports"] == {"8888/tcp": ("127.0.0.1", 8888)}


@pytest.mark.parametrize("value", ["2g", "512m", "1073741824", "64K"])
def test_shm_size_accepts_docker_sizes(value):
    assert settings.validated_shm_size(value) == value.lower()


@pytest.mark.parametrize("value", ["", "0", "-1g", "2gb", "lots", "1.5g"])
def test_shm_size_rejects_anything_else_with_the_fix(value):
    with pytest.raises(UsageError, match="shm-size"):
        settings.validated_shm_size(value)


def test_shm_size_has_one_default_which_compose_gives_too():
    compose = (settings.ROOT / "docker" / "compose.yaml").read_text()
    assert settings.Settings().shm_size == run.DEFAULT_SHM_SIZE
    assert f"shm_size: ${{TFDOCK_SHM_SIZE:-{run.DEFAULT_SHM_SIZE}}}" in compose


def test_the_image_users_ids_are_the_dockerfiles():
    dockerfile = (settings.ROOT / "docker" / "Dockerfile").read_text()
    uid, gid = run.IMAGE_USER_IDS_WHEN_ROOT
    assert f"ARG UID={uid}\n" in dockerfile and f"ARG GID={gid}\n" in dockerfile


def test_the_default_base_image_is_the_dockerfiles():
    dockerfile = (settings.ROOT / "docker" / "Dockerfile").read_text()
    assert f"ARG BASE_IMAGE={settings.DEFAULT_BASE_IMAGE}\n" in dockerfile
    assert f"FROM ${{BASE_IMAGE:-{settings.DEFAULT_BASE_IMAGE}}} AS base" in dockerfile

"""Settings and the `docker build` command line, checked as plain data (no engine)."""

import subprocess

import pytest

from tfdock_host import image, lock, settings
from tfdock_host.errors import UsageError


def test_invoke_yaml_and_its_env_override_are_what_nox_sees(monkeypatch):
    monkeypatch.delenv("INVOKE_TFDOCK_BASE_IMAGE", raising=False)
    assert settings.load().base_image == "python:3.11-slim-bookworm"
    monkeypatch.setenv("INVOKE_TFDOCK_BASE_IMAGE", "example/base:1")
    monkeypatch.setenv("INVOKE_TFDOCK_SHM_SIZE", "8g")
    loaded = settings.load()
    assert (loaded.base_image, loaded.shm_size) == ("example/base:1", "8g")


def test_dataset_dir_defaults_to_data_slash_dataset():
    s = settings.Settings()
    assert s.dataset_dir("mnist") == settings.ROOT / "data" / "mnist"
    assert s.dataset_dir("mnist", "/srv/mnist") == settings.Path("/srv/mnist")


def _build_args(**overrides):
    request = image.BuildRequest(variant="cpu", target="dev", base_image="base:1", **overrides)
    return image.build_args(settings.Settings(), request)


def _values(args, flag):
    return [args[i + 1] for i, arg in enumerate(args) if arg == flag]


def test_build_passes_base_variant_and_labels_without_touching_layers():
    args = _build_args()
    assert "BASE_IMAGE=base:1" in _values(args, "--build-arg")
    assert "VARIANT=cpu" in _values(args, "--build-arg")
    labels = dict(label.split("=", 1) for label in _values(args, "--label"))
    assert labels[image.HASH_LABEL] == image.content_hash("cpu")
    assert labels["io.tfdock.tensorflow-version"].startswith("2.21.")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=settings.ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert labels["org.opencontainers.image.revision"] == head


def test_pip_runs_in_the_base_image_unless_an_installer_image_is_set():
    """The multi-arch base serves the build machine's platform too; a single-architecture base of another
    platform (CI's arm64 twin) needs the build machine's own image for the installer stage."""
    request = image.BuildRequest(variant="cpu", target="dev", base_image="base:1-arm64", arch="arm64")
    by_default = image.build_args(settings.Settings(), request)
    assert "INSTALLER_IMAGE=base:1-arm64" in _values(by_default, "--build-arg")
    named = image.build_args(settings.Settings(installer_image="base:1"), request)
    assert "INSTALLER_IMAGE=base:1" in _values(named, "--build-arg")
    dockerfile = image.DOCKERFILE.read_text()
    assert (
        "FROM --platform=$BUILDPLATFORM ${INSTALLER_IMAGE:-python:3.11-slim-bookworm} AS installer"
        in dockerfile
    )


def test_outside_a_git_checkout_the_revision_is_unknown(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(image.subprocess, "run", no_git)
    labels = dict(label.split("=", 1) for label in _values(_build_args(), "--label"))
    assert labels["org.opencontainers.image.revision"] == "unknown"
    assert _values(_build_args(), "--tag")[1].endswith("-dev-unknown")


def test_tags_carry_version_variant_and_commit_plus_latest_per_variant():
    tags = _values(_build_args(extra_tags=("registry.example/t:1",)), "--tag")
    assert tags[0] == "tfdock:latest-cpu-dev"
    assert tags[1].startswith("tfdock:0.1.0-cpu-dev-")
    assert tags[2] == "registry.example/t:1"


def test_ca_bundle_goes_in_as_a_secret_never_as_a_build_arg(tmp_path):
    bundle = tmp_path / "corp.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    args = _build_args(ca_bundle=bundle)
    assert _values(args, "--secret") == [f"id=ca_bundle,src={bundle}"]
    assert not any(str(bundle) in value for value in _values(args, "--build-arg"))


def test_ca_bundle_resolution_order_and_a_missing_file(monkeypatch, tmp_path):
    first, second = tmp_path / "a.pem", tmp_path / "b.pem"
    first.write_text("a")
    second.write_text("b")
    monkeypatch.setenv("PIP_CERT", str(second))
    assert image.resolve_ca_bundle(str(first)) == first
    assert image.resolve_ca_bundle() == second
    monkeypatch.setenv("PIP_CERT", str(tmp_path / "missing.pem"))
    with pytest.raises(UsageError, match="PIP_CERT"):
        image.resolve_ca_bundle()


def test_content_hash_covers_lock_files_and_dockerfile_not_source(monkeypatch, tmp_path):
    """On a copy of the project's inputs: each of Dockerfile, its install scripts, .dockerignore and a lock
    file changes the hash (so the image is rebuilt), a source file does not (it is bind-mounted)."""
    inputs = [image.DOCKERFILE, *image.INSTALL_SCRIPTS, settings.ROOT / ".dockerignore"]
    inputs += image.lock_files("cpu")
    inputs += [*image.lock_files("gpu"), settings.ROOT / "src" / "tfdock" / "train.py"]
    for path in inputs:
        copy = tmp_path / path.relative_to(settings.ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(path.read_bytes())
    monkeypatch.setattr(image, "ROOT", tmp_path)
    monkeypatch.setattr(image, "DOCKERFILE", tmp_path / "docker" / "Dockerfile")
    monkeypatch.setattr(
        image,
        "INSTALL_SCRIPTS",
        tuple(tmp_path / p.relative_to(settings.ROOT) for p in image.INSTALL_SCRIPTS),
    )
    original = image.content_hash("cpu")
    assert original != image.content_hash("gpu")

    def edited(relative: str) -> str:
        path = tmp_path / relative
        kept = path.read_bytes()
        path.write_bytes(kept + b"\n# edited\n")
        try:
            return image.content_hash("cpu")
        finally:
            path.write_bytes(kept)

    assert edited("src/tfdock/train.py") == original
    for rebuilt_by in (
        "docker/Dockerfile",
        "docker/install-lock.sh",
        "docker/unreferenced_libraries.py",
        ".dockerignore",
        "requirements/runtime-cpu.txt",
    ):
        assert edited(rebuilt_by) != original, rebuilt_by
    assert edited("requirements/dev.txt") != original
    assert image.content_hash("cpu") == original


@pytest.mark.parametrize("field", ["variant", "target"])
def test_unknown_variant_or_target_is_a_usage_error(field):
    values = {"variant": "cpu", "target": "dev", field: "tpu"}
    with pytest.raises(UsageError, match="tpu"):
        image.BuildRequest(base_image="b", **values)


def test_lock_compiles_dev_after_the_runtime_locks_it_is_constrained_by():
    outputs = [command[command.index("-o") + 1] for command in lock.compile_commands()]
    assert outputs.index("dev.txt") > max(outputs.index("runtime-cpu.txt"), outputs.index("runtime-gpu.txt"))
    # An aarch64 lock is constrained by its x86_64 twin (and dev's by the aarch64 runtime lock).
    position = outputs.index
    assert position("dev.aarch64.txt") > position("runtime-cpu.aarch64.txt") > position("dev.txt")
    assert outputs.index("host-test.txt") > outputs.index("host.txt")
    assert all("--generate-hashes" in command for command in lock.compile_commands())

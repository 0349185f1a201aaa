"""The per-architecture locks and what `invoke build` makes of them, as plain data (no engine)."""

import re

import pytest

from tfdock_host import image, lock, settings
from tfdock_host.errors import UsageError

PIN = re.compile(r"^([a-z0-9][a-z0-9._-]*)==([^\s;]+)", re.M)
# In a lock: `    # via tensorflow` or, for several, `    # via` then `    #   keras` lines.
VIA = re.compile(r"^    # via (\S+)$|^    #   (\S+)$", re.M)
MARKED = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^]]*\])?\s*[=<>~!][^;#]*;\s*platform_machine\s*==\s*'(\w+)'", re.M
)


def pins(path):
    return dict(PIN.findall(path.read_text()))


def dependents(path):
    """package -> the packages (or -r/-c files) its lock says it is there for."""
    blocks = re.split(r"^(?=[a-z0-9])", path.read_text(), flags=re.M)
    found = {}
    for block in blocks:
        pinned = PIN.match(block)
        if pinned:
            found[pinned.group(1)] = {a or b for a, b in VIA.findall(block)}
    return found


def machine_only(source):
    """Packages the .in asks for on one platform_machine only: name -> machine."""
    return {name.lower(): machine for name, machine in MARKED.findall(source.read_text())}


@pytest.mark.parametrize(
    "name", sorted({name for names in lock.IMAGE_LOCKS.values() for name in names if name != "runtime-gpu"})
)
def test_each_architecture_pins_the_same_versions_and_the_in_markers_explain_the_rest(name):
    """Every package both locks pin has the same version; one pinned on a single architecture is asked for
    there only by a platform_machine marker of the .in, or is there only for such a package."""
    source = lock.LOCKS[name][0]
    x86_64 = lock.REQUIREMENTS / f"{name}.txt"
    aarch64 = lock.REQUIREMENTS / f"{lock.lock_name(name, 'arm64')}.txt"
    x86_pins, arm_pins = pins(x86_64), pins(aarch64)
    shared = x86_pins.keys() & arm_pins.keys()
    assert len(shared) > 30
    assert {p: x86_pins[p] for p in shared} == {p: arm_pins[p] for p in shared}

    marked = {}
    for path in [lock.REQUIREMENTS / f"{source}.in", lock.REQUIREMENTS / "runtime-cpu.in"]:
        marked.update(machine_only(path))
    for path, machine, only_here in [
        (x86_64, "x86_64", x86_pins.keys() - arm_pins.keys()),
        (aarch64, "aarch64", arm_pins.keys() - x86_pins.keys()),
    ]:
        via = dependents(path)
        for package in only_here:
            explained = marked.get(package) == machine or (via[package] and via[package] <= only_here)
            assert explained, f"{package} is pinned in {path.name} only, and no marker says why"


def test_the_tensorflow_build_differs_by_marker_as_pypi_ships_it():
    """tensorflow-cpu has no aarch64 wheel; PyPI's aarch64 tensorflow is the CPU build."""
    marked = machine_only(lock.REQUIREMENTS / "runtime-cpu.in")
    assert marked == {"tensorflow-cpu": "x86_64", "tensorflow": "aarch64"}
    assert "tensorflow-cpu" in pins(lock.REQUIREMENTS / "runtime-cpu.txt")
    assert "tensorflow" in pins(lock.REQUIREMENTS / "runtime-cpu.aarch64.txt")


@pytest.mark.parametrize("arch", lock.ARCHITECTURES)
def test_every_lock_an_architecture_installs_was_resolved_for_that_platform(arch):
    """uv resolved it for that platform (its header says so), so each pin has a wheel for it; no other
    image lock exists for it (runtime-gpu has none on arm64)."""
    platform = {"amd64": "x86_64-manylinux", "arm64": "aarch64-manylinux"}[arch]
    for name in lock.IMAGE_LOCKS[arch]:
        header = (lock.REQUIREMENTS / f"{lock.lock_name(name, arch)}.txt").read_text().splitlines()[1]
        assert f"--python-platform {platform}" in header, header
    expected = {f"{lock.lock_name(name, a)}.txt" for a, names in lock.IMAGE_LOCKS.items() for name in names}
    image_locks = {
        path.name for path in lock.REQUIREMENTS.glob("*.txt") if re.match(r"(runtime-|dev)", path.name)
    }
    assert image_locks == expected


def _build_args(arch):
    request = image.BuildRequest(variant="cpu", target="runtime", base_image="base:1", arch=arch)
    return image.build_args(settings.Settings(), request)


def test_a_build_names_its_platform_labels_its_architecture_and_hashes_its_locks():
    for arch in lock.ARCHITECTURES:
        args = _build_args(arch)
        assert args[args.index("--platform") + 1] == f"linux/{arch}"
        labels = dict(args[i + 1].split("=", 1) for i, arg in enumerate(args) if arg == "--label")
        assert labels[image.ARCH_LABEL] == arch
        assert labels[image.HASH_LABEL] == image.content_hash("cpu", arch)
        assert labels["io.tfdock.tensorflow-version"] == "2.21.0"
    assert image.content_hash("cpu", "arm64") != image.content_hash("cpu", "amd64")
    assert image.lock_files("cpu", "arm64")[0].name == "runtime-cpu.aarch64.txt"


def test_a_platform_setting_tags_its_architecture_so_the_engines_own_tag_is_never_taken():
    native = settings.Settings()
    emulated = native.apply(platform="linux/arm64")
    assert image.latest_tag(native, "cpu", "dev") == "tfdock:latest-cpu-dev"
    assert image.latest_tag(emulated, "cpu", "dev") == "tfdock:latest-cpu-dev-arm64"
    assert image.target_arch(emulated) == "arm64"
    request = image.BuildRequest(variant="cpu", target="dev", base_image="b", arch="arm64")
    args = image.build_args(emulated, request)
    tags = [args[i + 1] for i, arg in enumerate(args) if arg == "--tag"]
    assert tags[0] == "tfdock:latest-cpu-dev-arm64" and tags[1].endswith("-arm64"), tags


def test_gpu_on_arm64_and_unknown_platforms_are_one_line_each():
    with pytest.raises(UsageError, match="gpu variant has no linux/arm64 lock"):
        image.BuildRequest(variant="gpu", target="runtime", base_image="b", arch="arm64")
    with pytest.raises(UsageError, match="no locks for linux/s390x"):
        image.BuildRequest(variant="cpu", target="runtime", base_image="b", arch="s390x")
    with pytest.raises(UsageError, match="--platform 'linux/riscv64'"):
        settings.Settings().apply(platform="linux/riscv64")

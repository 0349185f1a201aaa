"""The built image on a real engine: labels, cache reuse, no secret in any layer, clear engine errors."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import socket
import stat
import subprocess
import tarfile
import typing
import xml.etree.ElementTree as ET

import pytest
from enginelib import ROOT, invoke

from tfdock_host import image

pytestmark = pytest.mark.engine


@pytest.mark.parametrize("target", ["runtime", "dev"])
def test_image_carries_oci_labels_and_the_current_content_hash(client, project_settings, target, request):
    tag = request.getfixturevalue(f"{target}_image")
    built = client.images.get(tag)
    labels = built.labels
    # Built for the engine's own architecture, and labelled and hashed for it.
    arch = client.version()["Arch"]
    assert built.attrs["Architecture"] == labels[image.ARCH_LABEL] == arch
    for key in ("source", "revision", "created", "version", "title"):
        assert labels[f"org.opencontainers.image.{key}"], key
    assert labels["io.tfdock.variant"] == project_settings.variant
    assert labels["io.tfdock.tensorflow-version"] == image.tensorflow_version(project_settings.variant)
    assert labels[image.HASH_LABEL] == image.content_hash(project_settings.variant, arch)


def test_a_repeated_build_with_nothing_changed_reuses_every_layer(client, runtime_image):
    # A first build takes in the current commit's labels (the fixture's image may predate a commit).
    assert invoke("build", "--target", "runtime").returncode == 0
    before = client.images.get(runtime_image).id
    result = invoke("build", "--target", "runtime")
    assert result.returncode == 0, result.stderr[-2000:]
    steps = re.findall(r"^#\d+ \[(?:base|deps|runtime) .*$", result.stderr, re.M)
    assert steps, "no build steps in the log"
    executed = [line for line in result.stderr.splitlines() if re.match(r"#\d+ \d+\.\d+ ", line)]
    assert executed == [], f"steps ran instead of coming from cache: {executed[:5]}"
    assert client.images.get(runtime_image).id == before


def test_editing_src_does_not_rebuild_and_the_suite_runs_inside_the_container(dev_image):
    probe = ROOT / "src" / "tfdock" / "_edit_probe.py"
    probe.write_text("# a source edit\n")
    try:
        result = invoke("test", "--", "tests/container/test_environment.py", "-q")
    finally:
        probe.unlink()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "building" not in output and "is stale" not in output
    junit = ET.parse(ROOT / "reports" / "junit-container.xml")
    properties = {p.get("name"): p.get("value") for p in junit.iter("property")}
    assert properties["image"] == dev_image
    assert properties["hostname"] != socket.gethostname()


# Every ELF shared library of the venv, loaded as the dynamic linker loads it (dlopen reads the program
# headers strip rewrites: a corrupted one fails there, as numpy's OpenBLAS did), and whether it still has a
# symbol table (benchmarks/gpu_arches.py reads the sections, mounted read-only). os._exit: some libraries'
# destructors crash at interpreter exit when loaded outside their package.
BENCHMARKS_IN_CONTAINER = "/tfdock-benchmarks"
LOAD_EVERY_LIBRARY = f"""
import ctypes, json, os, sys, sysconfig
from pathlib import Path
sys.path.insert(0, "{BENCHMARKS_IN_CONTAINER}")
from gpu_arches import ELF_MAGIC, sections
site = sysconfig.get_paths()["purelib"]
loaded, failed, with_symtab = [], [], []
for root, _, files in os.walk(site):
    for name in files:
        path = os.path.join(root, name)
        if ".so" not in name or os.path.islink(path):
            continue
        with open(path, "rb") as file:
            if file.read(4) != ELF_MAGIC:
                continue
        relative = os.path.relpath(path, site)
        try:
            ctypes.CDLL(path)
            loaded.append(relative)
        except OSError as error:
            failed.append(str(error))
        if ".symtab" in sections(Path(path)):
            with_symtab.append(relative)
print(json.dumps({{"loaded": loaded, "failed": failed, "with_symtab": with_symtab}}), flush=True)
os._exit(0)
"""


def test_every_library_of_the_dev_image_loads_after_the_trees_are_stripped(client, dev_image):
    # install-lock.sh strips the symbol tables of every ELF file of the dev tree's wheels that auditwheel
    # did not rewrite, and of TensorFlow's in the runtime tree.
    benchmarks = {str(ROOT / "benchmarks"): {"bind": BENCHMARKS_IN_CONTAINER, "mode": "ro"}}
    output = client.containers.run(
        dev_image, ["python", "-c", LOAD_EVERY_LIBRARY], volumes=benchmarks, remove=True
    )
    found = json.loads(output)
    assert found["failed"] == []
    stripped = set(found["loaded"]) - set(found["with_symtab"])
    mypyc = [path for path in found["loaded"] if re.search(r"__mypyc\.cpython-311-\w+-linux-gnu\.so$", path)]
    assert mypyc and set(mypyc) <= stripped, f"mypy's compiled library was not stripped: {mypyc}"
    assert any(path.startswith("tensorflow/") for path in stripped)
    assert any(path.startswith("xprof/") for path in found["loaded"])


CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


def _certificate_bodies(pem: bytes) -> set[bytes]:
    return {b"".join(body.split()) for body in CERTIFICATE.findall(pem)}


@pytest.fixture(scope="module")
def proxy_certificates(client, project_settings) -> list[bytes]:
    """The CA bundle's certificates that the base image does not ship: the TLS-intercepting proxy's own
    CA(s), what the secret carries that no image may contain. Public CAs are in every image anyway."""
    bundle = image.resolve_ca_bundle(configured=project_settings.ca_bundle)
    if bundle is None:
        pytest.skip("no CA bundle here (PIP_CERT, SSL_CERT_FILE, REQUESTS_CA_BUNDLE): no secret to leak")
    shipped = client.containers.run(
        project_settings.base_image, ["cat", "/etc/ssl/certs/ca-certificates.crt"], remove=True
    )
    own = sorted(_certificate_bodies(bundle.read_bytes()) - _certificate_bodies(shipped))
    if not own:
        pytest.skip(f"{bundle} holds only the public CAs the base image ships: no secret to leak")
    return own


def test_the_proxy_ca_from_the_build_secret_is_in_no_layer_and_no_history(
    client, runtime_image, dev_image, proxy_certificates
):
    # A PEM line (64 base64 chars) and the same bytes in DER, for each proxy certificate.
    needles = [body[64:128] for body in proxy_certificates]
    needles += [base64.b64decode(body)[48:96] for body in proxy_certificates]
    for tag in (runtime_image, dev_image):
        history = json.dumps(client.api.history(tag)).encode()
        assert not any(needle in history for needle in needles)
        scanned = _scan_image(client, tag, needles)
        assert scanned > 1000, f"only {scanned} files scanned in {tag}"


def _scan_image(client, tag: str, needles: list[bytes]) -> int:
    """Search the image's JSON and every file of every layer; returns how many files were scanned. Reads the
    engine's overlay2 layer dirs where this process may (root beside the engine: nothing copied, no disk
    needed), else streams `docker save`, which docker 20.10 first stages in full under its data root."""
    attrs = client.api.inspect_image(tag)
    _assert_absent(needles, json.dumps(attrs).encode(), f"{tag}'s config")
    layer_dirs = _readable_overlay_layers(attrs)
    if layer_dirs:
        return sum(_scan_dir(layer_dir, needles, tag) for layer_dir in layer_dirs)
    return _scan_saved(tag, needles)


def _readable_overlay_layers(attrs: dict) -> list[str]:
    driver = attrs.get("GraphDriver") or {}
    if driver.get("Name") != "overlay2":
        return []
    data = driver.get("Data") or {}
    layer_dirs = [*filter(None, (data.get("LowerDir") or "").split(":")), data.get("UpperDir") or ""]
    return layer_dirs if all(os.access(path, os.R_OK | os.X_OK) for path in layer_dirs) else []


def _scan_dir(layer_dir: str, needles: list[bytes], tag: str) -> int:
    scanned = 0
    for parent, _, names in os.walk(layer_dir):  # symlinks are neither followed nor read
        for path in (os.path.join(parent, name) for name in names):
            if stat.S_ISREG(os.lstat(path).st_mode):
                with open(path, "rb") as content:
                    _assert_absent(needles, content.read(), f"{tag}:{os.path.relpath(path, layer_dir)}")
                scanned += 1
    return scanned


def _scan_saved(tag: str, needles: list[bytes]) -> int:
    scanned = 0
    with (
        subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE) as save,
        tarfile.open(fileobj=save.stdout, mode="r|") as archive,
    ):
        for member in archive:
            blob = archive.extractfile(member) if member.isfile() else None
            if blob is None:
                continue
            if member.size < 1 << 20:  # config, manifests, small layers: scan the bytes as they are
                data = blob.read()
                _assert_absent(needles, data, f"{tag}:{member.name}")
                with contextlib.suppress(tarfile.TarError):
                    scanned += _scan_layer(io.BytesIO(data), "r:*", needles, tag)
            else:
                scanned += _scan_layer(blob, "r|*", needles, tag)
    return scanned


def _scan_layer(blob: typing.IO[bytes], mode: str, needles: list[bytes], tag: str) -> int:
    scanned = 0
    with tarfile.open(fileobj=blob, mode=mode) as layer:
        for entry in layer:
            content = layer.extractfile(entry) if entry.isfile() else None
            if content is not None:
                _assert_absent(needles, content.read(), f"{tag}:{entry.name}")
                scanned += 1
    return scanned


def _assert_absent(needles: list[bytes], data: bytes, where: str) -> None:
    assert not any(needle in data for needle in needles), f"the proxy CA from the build secret is in {where}"


def test_with_the_daemon_unreachable_build_prints_one_line_and_fails():
    result = invoke("build", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 1, result.stderr  # an engine failure: exit 1 (usage errors are 2)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "cannot reach the engine unix:///nonexistent/docker.sock" in lines[0] and "start it" in lines[0]
    assert "Traceback" not in result.stderr

"""Bad inputs to `invoke train`: each is one `error:` line, exit 2, no traceback, and nothing written."""

from __future__ import annotations

import gzip
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from enginelib import CONTAINER_PATH, invoke
from faultlib import assert_one_line_error

pytestmark = pytest.mark.faults

# One training step per epoch: a case that wrongly trains (a dropped option) still ends in seconds.
TRAINER = ("--limit-train", "300", "--limit-test", "100")
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


def rewritten(name: str, change: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    """Replace NAME.gz in a data dir by NAME, its decompressed bytes changed (the loader takes either)."""

    def damage(data: Path) -> None:
        packed = data / f"{name}.gz"
        (data / name).write_bytes(change(gzip.decompress(packed.read_bytes())))
        packed.unlink()

    return damage


def with_count(raw: bytes, delta: int) -> bytes:
    (count,) = struct.unpack(">I", raw[4:8])
    return raw[:4] + struct.pack(">I", count + delta) + raw[8:]


def truncated_gzip(data: Path) -> None:
    packed = data / f"{TEST_LABELS}.gz"
    packed.write_bytes(packed.read_bytes()[:-100])


def case(name, *options, data="{data}", outputs="{outputs}", damage=None, trainer=(), bug=""):
    """One bad input. Paths: {data} (the real data, or a damaged copy of it when `damage` is given),
    {outputs} (an empty dir), {file} (a regular file), {missing} (a path that does not exist)."""
    args = ("--data-dir", data, "--output-dir", outputs, *options, "--", *TRAINER, *trainer)
    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
    return pytest.param(args, damage, id=name, marks=marks)


INVOKE_PARSER = "invoke's own parser answers an unknown option with one line but exit 1 (not ours to change)"

BAD_INPUTS = [
    case("truncated gzip", damage=truncated_gzip),
    case("truncated IDX", damage=rewritten(TEST_IMAGES, lambda raw: raw[: len(raw) // 2])),
    case("wrong magic", damage=rewritten(TEST_IMAGES, lambda raw: struct.pack(">I", 2049) + raw[4:])),
    case("wrong count in header", damage=rewritten(TEST_LABELS, lambda raw: with_count(raw, 1))),
    case("fewer labels than images", damage=rewritten(TEST_LABELS, lambda raw: with_count(raw[:-1], -1))),
    case("empty file", damage=rewritten(TEST_LABELS, lambda raw: b"")),
    case("unreadable file", damage=lambda data: (data / f"{TEST_LABELS}.gz").chmod(0)),
    case("data dir does not exist", data="{missing}"),
    case("data dir is a file", data="{file}"),
    case("output dir is a file", outputs="{file}"),
    case("--gpus device=", "--gpus", "device="),
    case("--gpus abc", "--gpus", "abc"),
    case("--gpus -1", "--gpus", "-1"),
    case("--gpus device=0,,2", "--gpus", "device=0,,2"),
    case("--gpus bogus=1", "--gpus", "bogus=1"),
    case("--epochs 0", "--epochs", "0"),
    case("--epochs -1", "--epochs", "-1"),
    case("--epochs abc", "--epochs", "abc"),
    case("--batch-size 0", "--batch-size", "0"),
    case("--batch-size abc", "--batch-size", "abc"),
    case("--workers 0", "--workers", "0"),
    case("--shm-size abc", "--shm-size", "abc"),
    case("--shm-size -1g", "--shm-size", "-1g"),
    case("--bogus to invoke", "--bogus", bug=INVOKE_PARSER),
    case("--bogus to the trainer", trainer=("--bogus",)),
]


def tree(directory: Path) -> set[str]:
    return {str(path.relative_to(directory)) for path in directory.rglob("*")}


@pytest.mark.parametrize(("args", "damage"), BAD_INPUTS)
def test_a_bad_input_is_one_line_exit_2_and_writes_nothing(
    request, args, damage, fashion_mnist, runtime_image, scratch, tally
):
    data = fashion_mnist
    if damage:
        data = scratch / "data"
        shutil.copytree(fashion_mnist, data)
        damage(data)
    (scratch / "outputs").mkdir()
    (scratch / "a-file").write_text("not a directory\n")
    places = {"data": data, "outputs": scratch / "outputs", "file": scratch / "a-file"}
    places["missing"] = scratch / "no-such-dir"
    before = tree(scratch)

    result = invoke("train", *(arg.format_map(places) for arg in args), timeout=300)
    tally.bad_inputs[request.node.callspec.id] = result.returncode

    assert result.returncode == 2, (result.stdout + result.stderr)[-2000:]
    assert_one_line_error(result)
    assert CONTAINER_PATH.findall(result.stdout + result.stderr) == [], result.stderr[-2000:]
    assert tree(scratch) == before


def test_a_run_name_taken_is_refused_naming_the_run_dir_as_the_host_sees_it(
    fashion_mnist, runtime_image, scratch
):
    taken = scratch / "outputs" / "taken"
    taken.mkdir(parents=True)
    args = ["--data-dir", str(fashion_mnist), "--output-dir", str(scratch / "outputs")]
    result = invoke("train", *args, "--", "--run-name", "taken", timeout=300)
    assert result.returncode == 2, (result.stdout + result.stderr)[-2000:]
    assert_one_line_error(result)
    assert f"error: run dir {taken} already exists" in result.stderr, result.stderr[-2000:]
    assert list(taken.iterdir()) == []


def test_a_container_side_error_reaches_the_hosts_stderr(fashion_mnist, runtime_image, scratch):
    args = ["--data-dir", str(fashion_mnist), "--output-dir", str(scratch), "--", "--epochs", "-1"]
    result = invoke("train", *args)
    assert result.returncode == 2
    assert "--epochs must be >= 1" in result.stderr, f"stdout: {result.stdout!r}, stderr: {result.stderr!r}"

"""Receipts and `invoke reproduce` end to end: a real engine, real images, real Fashion-MNIST (a subset)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from docker.errors import ImageNotFound
from enginelib import ROOT, containers_mounting, invoke, wait_for

from tfdock_host import receipt

pytestmark = pytest.mark.engine

SUBSET = ["--limit-train", "2000", "--limit-test", "500"]
WORKTREES = "tfdock-reproduce-"


def tree_hash(directory: Path) -> str:
    """Every file's path, mode and bytes under directory: any change to the run dir changes it."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        digest.update(f"{path.relative_to(directory)}\0{path.lstat().st_mode}\0".encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def train(root: Path, data: Path, outputs: Path, *options: str, env: dict[str, str] | None = None) -> Path:
    result = run_invoke(
        root, "train", "--data-dir", str(data), "--output-dir", str(outputs), *options, "--", *SUBSET, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return (outputs / "latest").resolve()


def run_invoke(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if root == ROOT:
        return invoke(*args, env=env)
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=root,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


def worktrees(root: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "worktree", "list"], capture_output=True, text=True, check=True
    ).stdout


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return lines[0]


def test_a_run_reproduces_identically_a_stopped_rerun_or_changed_data_leave_the_original_untouched(
    scratch, client, runtime_image, fashion_mnist
):
    data = scratch / "data"
    shutil.copytree(fashion_mnist, data)
    outputs = scratch / "outputs"
    original = train(ROOT, data, outputs, "--epochs", "2")
    facts = receipt.load(original)
    assert facts["image"]["id"] == client.images.get(runtime_image).id
    recorded = {f["name"]: f["sha256"] for f in facts["data"]["files"]}
    assert recorded == {path.name: receipt.sha256(path) for path in data.iterdir()}
    assert facts["argv"][-2:] == ["--run-name", original.name]
    before = tree_hash(original)

    result = invoke("reproduce", str(outputs / "latest"), env={"COLUMNS": "250"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "same image" in result.stdout and "every metric agrees within 0" in result.stderr
    rerun = next(path for path in outputs.iterdir() if path.name.startswith(f"{original.name}-repro-"))
    old, new = (json.loads((path / "metrics.json").read_text()) for path in (original, rerun))
    assert (new["test_accuracy"], new["test_loss"]) == (old["test_accuracy"], old["test_loss"])
    assert [e["loss"] for e in new["history"]] == [e["loss"] for e in old["history"]]
    assert receipt.load(rerun)["image"]["id"] == facts["image"]["id"]
    assert tree_hash(original) == before
    assert WORKTREES not in worktrees(ROOT)

    # Ctrl-C once the rerun's container runs: the original unchanged, no container, no worktree left.
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "reproduce", str(original)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(
        lambda: containers_mounting(client, outputs, "running"), "the rerun's container", process=process
    )
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert containers_mounting(client, outputs) == []
    assert tree_hash(original) == before
    assert WORKTREES not in worktrees(ROOT)

    changed = data / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(changed.read_bytes())
    content[-1] ^= 0xFF
    changed.write_bytes(bytes(content))
    line = one_error_line(invoke("reproduce", str(original)))
    assert str(changed) in line
    assert tree_hash(original) == before


def test_an_uncommitted_change_is_rerun_from_the_patch_and_a_removed_image_is_rebuilt(
    scratch, client, runtime_image, fashion_mnist
):
    """In a throwaway clone (never in the shared checkout), with an image name of its own."""
    clone = scratch / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    git = ["git", "-C", str(clone), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    # A commit of its own: the image it builds is labelled with it, so it is no other image's twin.
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "the test's own commit"], check=True)
    name = f"tfdock-test-reproduce-{secrets.token_hex(3)}"
    env = {"INVOKE_TFDOCK_IMAGE": name}
    model = clone / "src" / "tfdock" / "model.py"
    committed = model.read_text()
    assert "BATCH_NORM_MOMENTUM = 0.9\n" in committed
    model.write_text(committed.replace("BATCH_NORM_MOMENTUM = 0.9\n", "BATCH_NORM_MOMENTUM = 0.5\n"))
    outputs = scratch / "outputs"
    try:
        original = train(clone, fashion_mnist, outputs, "--epochs", "1", env=env)
        facts = receipt.load(original)
        assert (
            facts["code"]["dirty"] and "BATCH_NORM_MOMENTUM = 0.5" in (original / "receipt.patch").read_text()
        )
        model.write_text(committed)
        (clone / "NOTES.md").write_text("work committed after the run\n")
        subprocess.run([*git, "add", "NOTES.md"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "later work"], check=True)
        before = tree_hash(original)

        client.images.remove(facts["image"]["id"], force=True)  # all its tags: the test's own
        line = one_error_line(run_invoke(clone, "reproduce", str(original), "--exact", env=env))
        assert "no longer in the engine" in line

        result = run_invoke(clone, "reproduce", str(original), env={**env, "COLUMNS": "250"})
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "rebuilt" in result.stdout
        rerun = next(path for path in outputs.iterdir() if path.name.startswith(f"{original.name}-repro-"))
        again = receipt.load(rerun)
        assert again["image"]["content_hash"] == facts["image"]["content_hash"]
        assert again["image"]["reference"] == f"{name}-reproduce:latest-cpu"
        # What ran is the patched code: the rerun's own receipt records the same diff on the same commit.
        assert again["code"]["commit"] == facts["code"]["commit"]
        assert (rerun / "receipt.patch").read_bytes() == (original / "receipt.patch").read_bytes()
        old, new = (json.loads((path / "metrics.json").read_text()) for path in (original, rerun))
        assert (new["test_accuracy"], new["test_loss"]) == (old["test_accuracy"], old["test_loss"])
        assert tree_hash(original) == before
    finally:
        for image in client.images.list():
            if any(tag.startswith((f"{name}:", f"{name}-reproduce:")) for tag in image.tags):
                with contextlib.suppress(ImageNotFound):
                    client.images.remove(image.id, force=True)


def test_the_receipt_of_a_two_worker_run_lists_both_workers(scratch, runtime_image, fashion_mnist):
    outputs = scratch / "outputs"
    run_dir = train(ROOT, fashion_mnist, outputs, "--epochs", "1", "--workers", "2", "--gpus", "none")
    workers = receipt.load(run_dir)["workers"]
    assert [worker["index"] for worker in workers] == [0, 1]
    assert all(worker["devices"] for worker in workers), workers

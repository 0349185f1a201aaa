"""The receipt's pieces that need no engine: code state from git, CPU facts, finding the run dir."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tfdock_host import receipt, reproduce, training
from tfdock_host.contract import EntryPoint
from tfdock_host.errors import UsageError
from tfdock_host.settings import ROOT

CPUINFO = """processor\t: 0
model name\t: Example CPU 9000
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile amx_bf16 aes
"""


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "t@example.com")
    git(tmp_path, "config", "user.name", "t")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "model.py").write_text("UNITS = 8\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_a_clean_tree_has_no_patch(repo):
    state = receipt.code_state(repo)
    assert state.commit == git(repo, "rev-parse", "HEAD").strip()
    assert (state.branch, state.dirty) == ("main", False)


def test_the_patch_holds_edits_binary_files_and_untracked_src_files_and_applies_to_the_commit(repo, tmp_path):
    (repo / "src" / "model.py").write_text("UNITS = 16\n")
    (repo / "src" / "weights.bin").write_bytes(bytes(range(256)))
    (repo / "notes.txt").write_text("outside src: not part of what ran\n")
    state = receipt.code_state(repo)
    assert state.dirty
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "apply", "--binary", "-"], input=state.patch, check=True)
    assert (clone / "src" / "model.py").read_text() == "UNITS = 16\n"
    assert (clone / "src" / "weights.bin").read_bytes() == bytes(range(256))
    assert not (clone / "notes.txt").exists()


def test_outside_a_git_repository_is_one_line(tmp_path):
    with pytest.raises(UsageError, match="git rev-parse failed"):
        receipt.code_state(tmp_path)


def test_cpu_facts_keep_only_the_flags_onednn_picks_kernels_by():
    cpu = receipt.cpu_facts(CPUINFO)
    assert cpu["model"] == "Example CPU 9000"
    assert cpu["onednn_flags"] == ["amx_bf16", "amx_tile", "avx", "avx2", "avx512_vnni", "avx512f", "fma"]


def test_the_run_dir_is_the_named_one_or_the_single_new_one_never_an_older_run(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "latest").symlink_to("old")
    before = receipt.run_dirs(tmp_path)
    assert receipt.find_run_dir(tmp_path, "", before) is None
    assert receipt.find_run_dir(tmp_path, "mine", before) is None  # it failed before making its dir
    assert receipt.find_run_dir(tmp_path, "old", before) is None  # it refused the name of an older run
    (tmp_path / "new").mkdir()
    assert receipt.find_run_dir(tmp_path, "", before) == tmp_path / "new"
    (tmp_path / "mine").mkdir()
    assert receipt.find_run_dir(tmp_path, "mine", before) == tmp_path / "mine"


ENTRY = EntryPoint(
    "train", ("python", "-m", "pkg.train"), options={"run_name": "--name", "resume": "--resume"}
)


def test_the_host_names_the_run_unless_argv_does_or_it_resumes():
    assert training.own_run_name(ENTRY, ["python"], "r1") == ("r1", ["--name", "r1"])
    assert training.own_run_name(ENTRY, ["python", "--name", "mine"], "r1") == ("mine", [])
    assert training.own_run_name(ENTRY, ["python", "--resume"], "r1") == ("", [])
    unnamed = EntryPoint("train", ("python", "-m", "pkg.train"))
    assert training.own_run_name(unnamed, ["python"], "r1") == ("", [])


def test_seeds_come_from_the_run_config():
    assert receipt.seeds({"seed": 3, "epochs": 2}) == {"seed": 3}
    assert receipt.seeds({"config": {"data_seed": 1}}) == {"data_seed": 1}


def test_a_dir_without_a_receipt_is_one_line(tmp_path):
    with pytest.raises(UsageError, match=r"has no receipt\.json"):
        receipt.load(tmp_path)
    (tmp_path / "receipt.json").write_text(json.dumps({"schema": 99}))
    with pytest.raises(UsageError, match="not a receipt"):
        receipt.load(tmp_path)


def test_receipts_differ_in_the_fields_that_changed_not_in_a_run_s_own():
    first = {"created": "a", "run_dir": "r1", "image": {"id": "sha256:1"}, "machine": {"cpu": {"cores": 2}}}
    second = {"created": "b", "run_dir": "r2", "image": {"id": "sha256:2"}, "machine": {"cpu": {"cores": 2}}}
    assert reproduce.receipt_differences(first, second) == {"image.id": ("sha256:1", "sha256:2")}


def test_a_rerun_compares_every_numeric_metric_per_epoch_too():
    metrics = {"test_accuracy": 0.9, "status": "done", "config": {"seed": 0}, "history": [{"loss": 0.5}]}
    assert reproduce.comparable(metrics) == {"test_accuracy": 0.9, "history.0.loss": 0.5}


def reproduce_invoke(run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "reproduce", str(run_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def a_receipt(run_dir: Path, commit: str, patch: bytes) -> None:
    """A receipt of a run that read no data files, with this commit and patch (no engine is reached)."""
    run_dir.mkdir()
    (run_dir / "receipt.patch").write_bytes(patch)
    facts = {
        "schema": receipt.SCHEMA,
        "argv": ["python", "-m", "tfdock.train", "--run-name", run_dir.name],
        "data": {"dataset": "fashion-mnist", "dir": str(run_dir), "files": []},
        "code": {"commit": commit, "branch": "main", "dirty": True, "patch": "receipt.patch"},
    }
    (run_dir / "receipt.json").write_text(json.dumps(facts))


@pytest.mark.parametrize(
    ("commit", "patch", "refusal"),
    [
        ("HEAD", b"--- a/nothing.py\n+++ b/nothing.py\n@@ -1 +1 @@\n-old\n+new\n", "does not apply"),
        ("0" * 40, b"", "is not in"),
    ],
)
def test_a_patch_that_does_not_apply_or_an_unknown_commit_is_one_line_and_leaves_no_worktree(
    tmp_path, commit, patch, refusal
):
    a_receipt(tmp_path / "run", commit, patch)
    result = reproduce_invoke(tmp_path / "run")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and refusal in lines[0] and "Traceback" not in result.stderr, result.stderr
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True, check=True
    )
    assert "tfdock-reproduce-" not in listed.stdout


def test_outside_a_git_repository_a_run_goes_on_and_its_receipt_records_no_commit(tmp_path):
    assert training.code_or_none(tmp_path) == receipt.CodeState(commit="", branch="", patch=b"")


def test_the_receipt_records_the_cpu_quota_the_run_had(tmp_path):
    facts = receipt.RunFacts(
        image={},
        code=receipt.CodeState(commit="", branch="", patch=b""),
        locks={},
        dataset="fashion-mnist",
        data_dir=tmp_path,
        data_files=[],
        entry_point=EntryPoint("train", ("python", "-m", "trainer")),
        argv=[],
        engine={},
        tfdock_version="0",
        cpu_quota="1.5",
    )
    receipt.write(tmp_path, facts)
    assert json.loads((tmp_path / receipt.RECEIPT).read_text())["machine"]["cpu_quota"] == "1.5"
    receipt.write(tmp_path, dataclasses.replace(facts, cpu_quota=""))
    assert json.loads((tmp_path / receipt.RECEIPT).read_text())["machine"]["cpu_quota"] is None

"""A run's receipt: receipt.json (and receipt.patch) in its run dir, written by the host after the entry
point ran. It records what produced the run: image, code, lock files, data, argv, machine, engine.

The host records everything here; the container side's own facts (seeds, devices, GPUs) are read from the
run's config.json and metrics.json, which the entry point wrote. See docs/reproduce.md.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tfdock_host.contract import ALTERNATIVES, Dataset, EntryPoint
from tfdock_host.errors import UsageError

RECEIPT = "receipt.json"
PATCH = "receipt.patch"
SCHEMA = 1
# The CPU flags oneDNN picks its kernels by: two machines that differ here may differ in the last digits.
ONEDNN_FLAG = re.compile(r"^(avx|avx2|fma|f16c|avx512\w*|amx\w*|avx_vnni\w*)$")


@dataclasses.dataclass(frozen=True)
class CodeState:
    """The project's code when the run started: commit, branch, and its uncommitted diff (b"" when clean)."""

    commit: str
    branch: str
    patch: bytes

    @property
    def dirty(self) -> bool:
        return bool(self.patch)


def code_state(root: Path) -> CodeState:
    """Captured before the run starts: an edit made while it trains must not end up in its receipt."""
    commit = _git(root, "rev-parse", "HEAD").decode().strip()
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD").decode().strip()
    patch = _git(root, "diff", "HEAD", "--binary")
    # New files nobody has added yet are part of what ran; `git diff --no-index` shows each as created.
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z", "--", "src").split(b"\0")
    for name in filter(None, untracked):
        patch += _git(root, "diff", "--no-index", "--binary", "--", "/dev/null", name.decode(), ok=(0, 1))
    return CodeState(commit, branch, patch)


def _git(root: Path, *args: str, ok: Sequence[int] = (0,)) -> bytes:
    try:
        # Read-only queries of the project being run: trusted even when another user owns the checkout
        # (git's safe.directory check would refuse them).
        command = ["git", "-c", f"safe.directory={root}", "-C", str(root), *args]
        result = subprocess.run(command, capture_output=True, check=False)
    except OSError:
        raise UsageError("git is not installed", "a receipt records the commit: install git") from None
    if result.returncode not in ok:
        reason = result.stderr.decode(errors="replace").strip().splitlines()
        raise UsageError(
            f"git {args[0]} failed in {root}: {reason[-1] if reason else result.returncode}",
            "receipts need the project in a git repository with at least one commit",
        )
    return result.stdout


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_files(dataset: Dataset, directory: Path) -> list[dict[str, Any]]:
    """Each declared file present in the data dir (of `a|b`, the ones there), with its size and sha256."""
    files = []
    for required in dataset.files:
        for name in required.split(ALTERNATIVES):
            path = directory / name
            if path.is_file():
                files.append({"name": name, "size": path.stat().st_size, "sha256": sha256(path)})
    return files


def image_facts(tag: str, variant: str) -> dict[str, Any]:
    from tfdock_host.engine import connect
    from tfdock_host.image import HASH_LABEL

    found = connect().images.get(tag)
    return {
        "reference": tag,
        "id": found.id,
        "repo_digests": list(found.attrs.get("RepoDigests") or []),
        "content_hash": found.labels.get(HASH_LABEL, ""),
        "variant": variant,
        "architecture": found.attrs.get("Architecture", ""),
        "os": found.attrs.get("Os", ""),
    }


def engine_facts() -> dict[str, str]:
    """The engine as engine.describe() names it: kind (Docker, rootless Docker, Podman, ...), version."""
    from tfdock_host.engine import connect, describe

    found = describe(connect())
    return {
        "kind": found.kind,
        "version": found.version,
        "api": found.api_version,
        "architecture": found.architecture,
    }


def cpu_facts(cpuinfo: str) -> dict[str, Any]:
    """The CPU as /proc/cpuinfo names it, and the instruction-set flags oneDNN chooses kernels by."""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M)
    return {
        "model": model.group(1).strip() if model else "unknown",
        "cores": os.cpu_count() or 0,
        "onednn_flags": sorted(f for f in (flags.group(1).split() if flags else []) if ONEDNN_FLAG.match(f)),
    }


def host_gpus() -> list[dict[str, str]]:
    """The host's NVIDIA GPUs by nvidia-smi (none when it is absent): model, driver, CUDA version."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    query = subprocess.run(
        [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    header = subprocess.run([smi], capture_output=True, text=True, check=False).stdout
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", header)
    gpus = []
    for line in query.stdout.splitlines() if query.returncode == 0 else []:
        name, _, driver = line.partition(",")
        gpus.append({"model": name.strip(), "driver": driver.strip(), "cuda": cuda.group(1) if cuda else ""})
    return gpus


def machine_facts(run_metrics: Mapping[str, Any]) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return {
        "cpu": cpu_facts(cpuinfo),
        "gpus": host_gpus(),
        # What the entry point itself saw, if it wrote metrics.json with these fields.
        "devices": list(run_metrics.get("devices", [])),
        "container_gpus": list(run_metrics.get("gpus", [])),
    }


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def seeds(config: Mapping[str, Any]) -> dict[str, Any]:
    """The run's seeds, from the config.json its entry point wrote (any key naming a seed)."""
    nested = config.get("config")
    merged = {**(nested if isinstance(nested, dict) else {}), **config}
    return {key: value for key, value in merged.items() if "seed" in key.lower()}


@dataclasses.dataclass(frozen=True)
class RunFacts:
    """What the host knew when the run started: everything the receipt records but the run's own files."""

    image: dict[str, Any]
    code: CodeState
    locks: dict[str, str]
    dataset: str
    data_dir: Path
    data_files: list[dict[str, Any]]
    entry_point: EntryPoint
    argv: list[str]
    engine: dict[str, str]
    tfdock_version: str
    workers: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    cpu_quota: str = ""  # the containers' CPU quota (--cpus); "" = none


def write(run_dir: Path, facts: RunFacts) -> Path:
    """receipt.json (and receipt.patch when the code was dirty) into run_dir, each by a temp name and a
    rename: a reader never sees half a receipt."""
    config = read_json(run_dir / "config.json")
    metrics = read_json(run_dir / "metrics.json")
    if facts.code.dirty:
        _write_atomically(run_dir / PATCH, facts.code.patch)
    workers = [
        {**worker, "devices": worker.get("devices") or list(metrics.get("devices", []))}
        for worker in facts.workers
    ]
    receipt = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "run_dir": run_dir.name,
        "image": facts.image,
        "code": {
            "commit": facts.code.commit,
            "branch": facts.code.branch,
            "dirty": facts.code.dirty,
            "patch": PATCH if facts.code.dirty else "clean",
        },
        "locks": facts.locks,
        "data": {"dataset": facts.dataset, "dir": str(facts.data_dir), "files": facts.data_files},
        "entry_point": {"role": facts.entry_point.role, "command": list(facts.entry_point.command)},
        "argv": facts.argv,
        "seeds": seeds(config),
        "machine": {**machine_facts(metrics), "cpu_quota": facts.cpu_quota or None},
        "workers": workers,
        "engine": facts.engine,
        "tfdock_version": facts.tfdock_version,
    }
    path = run_dir / RECEIPT
    _write_atomically(path, (json.dumps(receipt, indent=2) + "\n").encode())
    return path


def _write_atomically(path: Path, data: bytes) -> None:
    """By a temp name and a rename, owned like the run dir (the host may run as root, its run dir not)."""
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temp.write_bytes(data)
    owner = path.parent.stat()
    if os.getuid() == 0:
        os.chown(temp, owner.st_uid, owner.st_gid)
    os.replace(temp, path)


def load(run_dir: Path) -> dict[str, Any]:
    """A run's receipt; a dir without one (or with a damaged one) is one line."""
    path = run_dir / RECEIPT
    if not path.is_file():
        raise UsageError(f"{run_dir} has no {RECEIPT}", "name a run dir that `invoke train` wrote")
    receipt = read_json(path)
    if receipt.get("schema") != SCHEMA:
        raise UsageError(f"{path} is not a receipt this tfdock reads", "name another run dir")
    return receipt


def run_dirs(outputs: Path) -> set[Path]:
    return (
        {path for path in outputs.iterdir() if path.is_dir() and not path.is_symlink()}
        if outputs.is_dir()
        else set()
    )


def find_run_dir(outputs: Path, named: str, before: set[Path]) -> Path | None:
    """The run dir the entry point made: the one named for it, else the one new since it started. None when
    it made none (it failed first, or refused a name an older run has): an older run's receipt is never
    overwritten."""
    new = run_dirs(outputs) - before
    if named:
        return outputs / named if outputs / named in new else None
    return new.pop() if len(new) == 1 else None

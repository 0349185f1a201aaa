"""`invoke runs` and `invoke reproduce RUN`: the runs' receipts side by side, and a run rerun from its
receipt (its commit and patch in a temporary worktree, its image, its data checked) into a new run dir.

The original run dir is only read. See docs/reproduce.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rich.table import Table

from tfdock_host import console, receipt, training
from tfdock_host.contract import EntryPoint
from tfdock_host.errors import BuildError, TfdockError, UsageError
from tfdock_host.run import WORKSPACE, Mount, task_spec
from tfdock_host.settings import ROOT, Settings

# Receipt fields that differ between any two runs by design: not what a reproduction compares.
OWN_FIELDS = ("schema", "created", "run_dir", "argv", "code.patch", "workers")
# A rerun checks the commit out detached, in a worktree: its branch is no difference.
RERUN_FIELDS = (*OWN_FIELDS, "code.branch")
# Metrics that measure the machine's speed, not the model: shown, never compared.
TIMING = ("seconds", "per_second")


def flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested receipt or metrics dict as dotted keys (`image.id`, `history.1.loss`)."""
    if isinstance(value, Mapping):
        items: list[tuple[str, Any]] = [(str(key), item) for key, item in value.items()]
    elif isinstance(value, list) and any(isinstance(item, Mapping | list) for item in value):
        items = [(str(index), item) for index, item in enumerate(value)]
    else:
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in items:
        out.update(flat(item, f"{prefix}.{key}" if prefix else key))
    return out


def receipt_differences(
    first: Mapping[str, Any], second: Mapping[str, Any], ignored: tuple[str, ...] = OWN_FIELDS
) -> dict[str, tuple[Any, Any]]:
    """The receipt fields whose values differ (missing on one side: None)."""
    a, b = flat(first), flat(second)
    return {
        key: (a.get(key), b.get(key))
        for key in sorted(set(a) | set(b))
        if not key.startswith(ignored) and a.get(key) != b.get(key)
    }


def run_dir_of(settings: Settings, run: str) -> Path:
    """A run named by its dir (a path) or by its name under the outputs dir; `latest` resolved."""
    outputs = settings.host_path(settings.output_dir)
    candidates = [Path(run).expanduser(), outputs / run]
    for candidate in candidates:
        if (candidate / receipt.RECEIPT).is_file():
            return candidate.resolve()
    raise UsageError(
        f"no run with a receipt at {run}", f"name a run dir, e.g. {outputs}/latest (`invoke runs`)"
    )


# ---- invoke runs ----------------------------------------------------------------------------------------


def list_runs(settings: Settings) -> None:
    outputs = settings.host_path(settings.output_dir)
    table = Table("date", "run", "commit", "dirty", "image", "test accuracy", "machine", title=str(outputs))
    for run_dir in sorted(receipt.run_dirs(outputs)):
        if not (run_dir / receipt.RECEIPT).is_file():
            continue
        facts = receipt.read_json(run_dir / receipt.RECEIPT)
        metrics = receipt.read_json(run_dir / "metrics.json")
        accuracy = metrics.get("test_accuracy")
        cpu = facts.get("machine", {}).get("cpu", {})
        gpus = facts.get("machine", {}).get("gpus", [])
        image = facts.get("image", {})
        table.add_row(
            facts.get("created", "")[:19].replace("T", " "),
            run_dir.name,
            facts.get("code", {}).get("commit", "")[:10],
            "yes" if facts.get("code", {}).get("dirty") else "no",
            f"{image.get('reference', '')} {image.get('id', '')[7:19]}",
            f"{accuracy:.4f}" if isinstance(accuracy, float) else "-",
            ", ".join(
                [f"{cpu.get('model', '?')} ({cpu.get('cores', '?')} cores)", *(g["model"] for g in gpus)]
            ),
        )
    console.out.print(table)


def diff_runs(settings: Settings, first: str, second: str) -> None:
    a, b = run_dir_of(settings, first), run_dir_of(settings, second)
    differences = receipt_differences(receipt.load(a), receipt.load(b))
    table = Table("field", a.name, b.name, title="receipts differ in" if differences else "receipts agree")
    for key, (left, right) in differences.items():
        table.add_row(key, _shown(left), _shown(right))
    console.out.print(table)


def _shown(value: Any) -> str:
    return "-" if value is None else json.dumps(value) if isinstance(value, list | dict) else str(value)


# ---- invoke reproduce -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Reproduction:
    run_dir: Path
    image_note: str  # "same image" or "rebuilt"


def reproduce(settings: Settings, run: str, *, exact: bool = False, tolerance: float = 0.0) -> int:
    """Rerun a run from its receipt into a new run dir; 0 when the metrics agree within tolerance, else 1."""
    if tolerance < 0 or math.isnan(tolerance):
        raise UsageError(f"invalid --tolerance {tolerance}", "--tolerance takes a number >= 0")
    original = run_dir_of(settings, run)
    facts = receipt.load(original)
    argv = list(facts["argv"])
    if original.name not in argv:
        raise UsageError(
            f"{original} was not named by tfdock (its entry point declares no run_name option)",
            "declare options.run_name in invoke.yaml (docs/contract.md) so a rerun gets a dir of its own",
        )
    data = check_data(facts)
    with worktree(facts, original) as source:
        image_id, reference, image_note = image_for(facts, source, exact)
        new_name = f"{original.name}-repro-{secrets.token_hex(3)}"
        new_argv = [new_name if arg == original.name else arg for arg in argv]
        reproduction = rerun(
            settings, facts, source, (image_id, reference), data, original.parent, new_argv, new_name
        )
    return compare(original, Reproduction(reproduction, image_note), tolerance)


def check_data(facts: Mapping[str, Any]) -> Path:
    """The data dir the run read, each file as it was then; a changed or missing one is one line."""
    data = Path(facts["data"]["dir"])
    for recorded in facts["data"]["files"]:
        path = data / recorded["name"]
        if not path.is_file():
            raise UsageError(f"{path} is missing, which the run read", "restore the run's data there")
        if path.stat().st_size != recorded["size"] or receipt.sha256(path) != recorded["sha256"]:
            raise UsageError(
                f"{path} differs from the file the run read (sha256 {recorded['sha256'][:12]}…)",
                "restore the run's data; a rerun on other data would prove nothing",
            )
    return data


@contextlib.contextmanager
def worktree(facts: Mapping[str, Any], original: Path) -> Iterator[Path]:
    """The run's commit checked out in a temporary git worktree, its receipt.patch applied; removed after."""
    commit = facts["code"]["commit"]
    if not commit:
        raise UsageError(f"{original}'s receipt records no commit", "train from a git checkout to reproduce")
    parent = Path(tempfile.mkdtemp(prefix="tfdock-reproduce-"))
    parent.chmod(0o755)  # the container's user reads the source mounted from here
    path = parent / "source"
    added = _git("worktree", "add", "--detach", str(path), commit)
    try:
        if added.returncode != 0:
            raise UsageError(
                f"commit {commit[:12]} of {original} is not in {ROOT}", "fetch it (`git fetch`) and rerun"
            )
        if facts["code"]["dirty"]:
            patch = original / receipt.PATCH
            applied = _git("-C", str(path), "apply", "--binary", str(patch))
            if applied.returncode != 0:
                reason = (applied.stderr.strip().splitlines() or ["git apply failed"])[0]
                raise UsageError(f"{patch} does not apply to {commit[:12]}: {reason}", "the patch is damaged")
        yield path
    finally:
        _git("worktree", "remove", "--force", str(path))
        shutil.rmtree(parent, ignore_errors=True)


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    command = ["git", "-c", f"safe.directory={ROOT}", "-C", str(ROOT), *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def image_for(facts: Mapping[str, Any], source: Path, exact: bool) -> tuple[str, str, str]:
    """(id, reference, note) of the run's image when the engine has it; else (not --exact) of one built
    from the run's code under a repository of its own (`<image>-reproduce`), so the tasks' own tags are
    never replaced."""
    from docker.errors import ImageNotFound

    from tfdock_host.engine import connect

    recorded = facts["image"]
    try:
        connect().images.get(recorded["id"])
        return recorded["id"], recorded["reference"], "same image"
    except ImageNotFound:
        pass
    if exact:
        raise UsageError(
            f"the run's image {recorded['reference']} ({recorded['id'][7:19]}) is no longer in the engine",
            "drop --exact to rebuild it from the run's commit",
        )
    repository, _, tag_part = recorded["reference"].rpartition(":")
    target = "dev" if tag_part.endswith("-dev") else "runtime"
    commit = facts["code"]["commit"][:12]
    console.info(f"the run's image {recorded['id'][7:19]} is gone: rebuilding it from commit {commit}")
    build = subprocess.run(
        [sys.executable, "-m", "invoke", "build", "--target", target, "--variant", recorded["variant"]],
        cwd=source,
        env={**os.environ, "INVOKE_TFDOCK_IMAGE": f"{repository}-reproduce"},
        check=False,
    )
    if build.returncode != 0:
        raise BuildError(f"rebuilding the run's image failed (exit {build.returncode})", "its log is above")
    reference = f"{repository}-reproduce:{tag_part}"
    return str(connect().images.get(reference).id), reference, "rebuilt"


def rerun(
    settings: Settings,
    facts: Mapping[str, Any],
    source: Path,
    image: tuple[str, str],
    data: Path,
    outputs: Path,
    argv: list[str],
    name: str,
) -> Path:
    """The entry point with the run's argv, the worktree's source mounted, into outputs/<name>."""
    entry = EntryPoint(facts["entry_point"]["role"], tuple(facts["entry_point"]["command"]))
    image_id, reference = image
    spec = task_spec(
        "reproduce", image_id, argv, data_dir=data, output_dir=outputs, gpus=settings.gpu_requests
    )
    spec = dataclasses.replace(
        spec, mounts=tuple(Mount(source, WORKSPACE) if m.target == WORKSPACE else m for m in spec.mounts)
    )
    workers = len(facts.get("workers", []))
    new_facts = training.run_facts(
        settings, source, image_id, entry, _dataset(settings, facts), data, argv, workers, spec.name
    )
    image_facts = receipt.image_facts(image_id, facts["image"]["variant"])
    new_facts = dataclasses.replace(new_facts, image={**image_facts, "reference": reference})
    exit_code = training.run_and_record(spec, workers, outputs, name, new_facts)
    if exit_code != 0:
        raise RerunFailed(exit_code)
    return outputs / name


class RerunFailed(TfdockError):
    """The rerun's entry point exited non-zero (130/143: it was interrupted)."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(
            f"the rerun exited with {exit_code}; the original run is untouched", "its log is above"
        )
        self.exit_code = exit_code


def _dataset(settings: Settings, facts: Mapping[str, Any]) -> Any:
    return settings.contract.dataset(facts["data"]["dataset"], "the run's receipt")


def comparable(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric metrics of a run, as dotted keys; timings measure the machine, not the model."""
    return {
        key: float(value)
        for key, value in flat({k: v for k, v in metrics.items() if k != "config"}).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def compare(original: Path, reproduction: Reproduction, tolerance: float) -> int:
    before = comparable(receipt.read_json(original / "metrics.json"))
    after = comparable(receipt.read_json(reproduction.run_dir / "metrics.json"))
    table = Table("metric", original.name, reproduction.run_dir.name, "difference", title="metrics")
    disagree = []
    for key in sorted(set(before) | set(after)):
        left, right = before.get(key), after.get(key)
        timing = any(word in key for word in TIMING)
        if left is None or right is None:
            difference = "missing"
        else:
            difference = f"{right - left:+.6g}" + (" (timing: not compared)" if timing else "")
        if not timing and (left is None or right is None or abs(right - left) > tolerance):
            disagree.append(key)
        table.add_row(key, _shown(left), _shown(right), difference)
    console.out.print(table)
    fields = receipt_differences(receipt.load(original), receipt.load(reproduction.run_dir))
    changes = Table("receipt field", "original", "reproduction", title="what differs")
    changes.add_row("image", "", reproduction.image_note)
    for key, (left, right) in fields.items():
        changes.add_row(key, _shown(left), _shown(right))
    console.out.print(changes)
    if any(key.startswith("machine.") for key in fields):
        console.info("the machine differs: oneDNN may pick other kernels, so the last digits may differ")
    if disagree:
        console.info(f"{len(disagree)} metrics differ beyond {tolerance:g}: {', '.join(disagree[:5])}")
        return 1
    console.info(f"reproduced: every metric agrees within {tolerance:g} — {reproduction.run_dir}")
    return 0

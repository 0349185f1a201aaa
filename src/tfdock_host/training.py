"""`invoke train`: the host's half of a training run (image, data, GPUs, mounts); the container trains.

What runs is the project's declared train entry point (settings.contract): the host never names it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

from tfdock_host import console, image, receipt
from tfdock_host.contract import Dataset, EntryPoint
from tfdock_host.errors import TfdockError, UsageError
from tfdock_host.run import (
    DATA_DIR,
    DEBUG_PORT,
    OUTPUT_DIR,
    RunSpec,
    execute,
    execute_group,
    host_dir,
    require_gpu_access,
    task_spec,
)
from tfdock_host.settings import ROOT, Settings
from tfdock_host.spec import PROGRESS_VARIABLE

WORKER_PORT = 23456
# How the last line of a run that succeeded begins: its run dir follows, as the host sees it.
RUN_DIR_LINE = "run dir:"
# Task options that are numbers: checked here, so "abc" or 0 is one line before any container starts.
COUNTS = ("epochs", "batch_size")


def train(
    settings: Settings,
    *,
    debug: bool = False,
    workers: int = 1,
    task_options: Mapping[str, str | bool] | None = None,
    trainer_args: list[str] | None = None,
) -> int:
    """Run the train entry point in the runtime image (the dev image under --debug); its exit code."""
    if workers > 1 and debug:
        raise UsageError("--debug takes one process", "debug with --workers 1")
    entry = settings.contract.train
    options = entry_options(entry, task_options or {}, "invoke train")
    dataset = settings.contract.dataset(settings.dataset_name)
    data = settings.dataset_dir(dataset.name)
    to_fetch = missing_files(settings, dataset, data)
    outputs = host_dir(settings.host_path(settings.output_dir))
    if settings.gpu_requests:
        require_gpu_access(settings.base_image, settings.gpu_requests)
    # debugpy lives in the dev image; the runtime image is what production runs.
    tag = image.ensure(settings, settings.run_variant, "dev" if debug else "runtime")
    if to_fetch:
        fetch(tag, dataset, data)
    command = entry.argv(dataset=dataset.name, data_dir=DATA_DIR, output_dir=OUTPUT_DIR)
    argv = [*command, *options, *(trainer_args or [])]
    spec = task_spec(
        "train",
        tag,
        argv,
        data_dir=data,
        output_dir=outputs,
        gpus=settings.gpu_requests,
        shm_size=settings.shm_size,
        debug=debug,
        nano_cpus=settings.nano_cpus,
    )
    run_name, naming = own_run_name(entry, argv, spec.name.split("-train-", 1)[-1])
    argv += naming
    spec = dataclasses.replace(spec, command=(*spec.command, *naming))
    facts = run_facts(settings, ROOT, tag, entry, dataset, data, argv, workers, spec.name)
    if debug:
        console.info(f"debugpy waits for your IDE on 127.0.0.1:{DEBUG_PORT} (see docs/ide.md)")
    # A resumed run keeps the receipt of the run it continues.
    return run_and_record(
        spec, workers, outputs, run_name, facts, record=entry.options.get("resume") not in argv
    )


def run_and_record(
    spec: RunSpec, workers: int, outputs: Path, run_name: str, facts: receipt.RunFacts, record: bool = True
) -> int:
    """Run the spec (on `workers` workers), then write the receipt into the run's dir, however it ended;
    a run that succeeded ends with the line naming its dir as the host sees it."""
    before = receipt.run_dirs(outputs)
    succeeded = False
    try:
        exit_code = train_workers(spec, workers) if workers > 1 else execute(spec)
        succeeded = exit_code == 0
    finally:
        new_run_dir = receipt.find_run_dir(outputs, run_name, before)
        if record:
            write_receipt(outputs, new_run_dir, facts, succeeded)
    run_dir = new_run_dir or last_written_run_dir(outputs)
    if succeeded and run_dir is not None:
        print(f"{RUN_DIR_LINE} {run_dir}", flush=True)
    return exit_code


def last_written_run_dir(outputs: Path) -> Path | None:
    """The run dir written last: the one a resumed run continued (it names no new dir)."""
    return max(receipt.run_dirs(outputs), key=lambda path: path.stat().st_mtime_ns, default=None)


def own_run_name(entry: EntryPoint, argv: list[str], chosen: str) -> tuple[str, list[str]]:
    """The run's name, so its dir is known (for the receipt, and one dir for all workers), and the args
    that name it: the name argv gives, else `chosen` with the declared flag. ("", []) when the entry point
    names its own runs (no run_name option, or a resumed run)."""
    flag = entry.options.get("run_name")
    if not flag or entry.options.get("resume") in argv:
        return "", []
    if flag in argv[:-1]:
        return argv[argv.index(flag) + 1], []
    return chosen, [flag, chosen]


def run_facts(
    settings: Settings,
    root: Path,
    tag: str,
    entry: EntryPoint,
    dataset: Dataset,
    data: Path,
    argv: list[str],
    workers: int,
    run: str,
) -> receipt.RunFacts:
    """What the receipt records of a run of the project at root, taken before the run starts (an edit made
    while it trains is not in it)."""
    from tfdock_host.lock import LOCKS

    locks = {f"{name}.txt": receipt.sha256(root / "requirements" / f"{name}.txt") for name in LOCKS}
    return receipt.RunFacts(
        image=receipt.image_facts(tag, settings.run_variant),
        code=code_or_none(root),
        locks=locks,
        dataset=dataset.name,
        data_dir=data,
        data_files=receipt.dataset_files(dataset, data),
        entry_point=entry,
        argv=argv,
        engine=receipt.engine_facts(),
        tfdock_version=image._project_version(),
        workers=[
            {"index": index, "container": f"{run}-w{index}", "gpus": settings.gpus}
            for index in range(workers if workers > 1 else 0)
        ],
        cpu_quota=settings.cpus,
    )


def code_or_none(root: Path) -> receipt.CodeState:
    """The code's state; outside a git repository the run goes on, its receipt without a commit."""
    try:
        return receipt.code_state(root)
    except UsageError as error:
        console.info(f"the receipt will record no commit: {error.message}")
        return receipt.CodeState(commit="", branch="", patch=b"")


def write_receipt(outputs: Path, run_dir: Path | None, facts: receipt.RunFacts, succeeded: bool) -> None:
    """Into the run's new dir, also of a failed run that made one; a failed run without one (a bad input)
    says nothing more, so its error stays the last line."""
    if run_dir is None:
        if succeeded:
            console.info(f"no receipt: tfdock found no new run dir under {outputs}")
        return
    try:
        receipt.write(run_dir, facts)
    except OSError as error:
        console.info(f"could not write the receipt into {run_dir}: {error.strerror or error}")


def entry_options(entry: EntryPoint, values: Mapping[str, str | bool], task: str) -> list[str]:
    """The entry point's flags for the task options given (`--epochs 3` -> its declared flag and 3);
    an option it does not declare is one line."""
    flags: list[str] = []
    for option, value in values.items():
        if value is False or value == "":
            continue
        flag = entry.flag(option, task)
        if value is True:
            flags.append(flag)
        else:
            shown = "--" + option.replace("_", "-")
            flags += [flag, str(whole_number(shown, value)) if option in COUNTS else value]
    return flags


def missing_files(settings: Settings, dataset: Dataset, data: Path) -> list[str]:
    """The dataset's files that the default data dir lacks (to fetch). A named dir is never written
    into, so there any missing file is one line; so is a file where the dir should be."""
    if data.exists() and not data.is_dir():
        raise UsageError(
            f"data dir {data} is a file", "point --data-dir at the directory holding the dataset"
        )
    if settings.data_dir_named and not data.is_dir():
        raise UsageError(f"data dir {data} does not exist", "check --data-dir, or leave it out to fetch")
    missing = dataset.missing(data)
    if missing and settings.data_dir_named:
        raise UsageError(
            f"{data} lacks {missing[0]} of {dataset.name}",
            "put the dataset's files there, or leave --data-dir out to fetch them into "
            f"{settings.host_path(dataset.dir)}",
        )
    if missing and not dataset.fetch:
        raise UsageError(
            f"{data} lacks {missing[0]} of {dataset.name}, and the project declares no fetch command",
            "put the dataset's files there, or declare its fetch command in invoke.yaml (docs/contract.md)",
        )
    return missing


def fetch(tag: str, dataset: Dataset, data: Path) -> None:
    """The one step with network: the dataset's fetch command, with the default data dir writable."""
    data = host_dir(data)
    console.info(f"{dataset.name} is not in {data}: fetching it (training itself runs without network)")
    # The data dir is the writable mount here; the entry points never get it writable.
    command = [arg.format_map({"dataset": dataset.name, "data_dir": OUTPUT_DIR}) for arg in dataset.fetch]
    exit_code = execute(task_spec("fetch", tag, command, output_dir=data, network="bridge"))
    if exit_code != 0:
        raise UsageError(
            f"could not fetch {dataset.name} into {data} (exit {exit_code})",
            "put the dataset's files there yourself and pass --data-dir",
        )
    still_missing = dataset.missing(data)
    if still_missing:
        raise UsageError(
            f"fetching {dataset.name} left {data} without {still_missing[0]}",
            "check the dataset's fetch command in invoke.yaml (docs/contract.md)",
        )


def train_workers(spec: RunSpec, count: int) -> int:
    """N containers under MultiWorkerMirroredStrategy, on a private network of their own: TF's gRPC
    servers listen on every interface, so they are reachable from each other and from nothing else."""
    names = [f"{spec.name}-w{index}" for index in range(count)]
    cluster = {"worker": [f"{name}:{WORKER_PORT}" for name in names]}
    # One run dir for all workers: train() named the run (own_run_name).
    members = {
        f"worker {index}": dataclasses.replace(
            spec,
            name=name,
            network=spec.name,
            environment={
                **spec.environment,
                "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                # Lines prefixed by worker interleave: a live line rewritten in place would not.
                PROGRESS_VARIABLE: "plain",
            },
        )
        for index, name in enumerate(names)
    }
    exit_code, failed = execute_group(members, private_network=spec.name)
    if failed:
        raise WorkerFailed(
            f"{failed} ({members[failed].name}) exited with {exit_code}; stopped the other workers",
            "its log lines above say why; `invoke train --workers N --resume` continues from its checkpoint",
            exit_code,
        )
    return exit_code


class WorkerFailed(TfdockError):
    """One worker of a multi-worker run failed, so the run stopped."""

    def __init__(self, message: str, hint: str, exit_code: int) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code if exit_code > 0 else 1


def whole_number(flag: str, value: str, minimum: int = 1) -> int:
    """An option's text as a number: invoke's own int options would answer "abc" with a traceback."""
    if not value.strip().isdigit() or int(value) < minimum:
        raise UsageError(f"invalid {flag} {value!r}", f"{flag} takes a whole number >= {minimum}")
    return int(value)

"""`invoke train`: the host's half of a training run (image, data, GPUs, mounts); the container trains."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from tfdock_host import console, gpus, image
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
from tfdock_host.settings import Settings

DATASETS = ("mnist", "fashion-mnist")
# The MNIST format's standard names (Fashion-MNIST uses the same), gzipped or not; or Keras's single npz.
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
NPZ_FILE = "mnist.npz"
WORKER_PORT = 23456


def train(
    settings: Settings,
    *,
    gpus_spec: str = "",
    dataset: str = "",
    data_dir: str = "",
    output_dir: str = "",
    variant: str = "",
    shm_size: str = "",
    debug: bool = False,
    workers: int = 1,
    trainer_args: list[str] | None = None,
) -> int:
    """Run `python -m tfdock.train` in the runtime image; returns its exit code."""
    if workers > 1 and debug:
        raise UsageError("--debug takes one process", "debug with --workers 1")
    dataset = validated_dataset(dataset or settings.dataset)
    gpu_requests = tuple(gpus.parse(gpus_spec or settings.gpus))
    if gpu_requests:
        require_gpu_access(settings.base_image, gpu_requests)
    variant = image.variant_for(settings, bool(gpu_requests), variant)
    shm_size = validated_shm_size(shm_size or settings.shm_size)
    data = settings.dataset_dir(dataset, data_dir)
    outputs = host_dir(settings.host_path(output_dir or settings.output_dir))
    if data.exists() and not data.is_dir():
        raise UsageError(
            f"data dir {data} is a file", "point --data-dir at the directory holding the dataset"
        )
    # Downloads go only to the default data/<dataset>: a dir you name must hold the data already.
    if (data_dir or settings.data_dir) and not data.is_dir():
        raise UsageError(f"data dir {data} does not exist", "check --data-dir, or leave it out to download")
    # debugpy lives in the dev image; the runtime image is what production runs.
    tag = image.ensure(settings, variant, "dev" if debug else "runtime")

    if missing_dataset_files(data):
        _download(tag, dataset, data)
    command = ["python", "-m", "tfdock.train", "--dataset", dataset, "--data-dir", DATA_DIR]
    command += ["--output-dir", OUTPUT_DIR, *(trainer_args or [])]
    spec = task_spec(
        "train",
        tag,
        command,
        data_dir=data,
        output_dir=outputs,
        gpus=gpu_requests,
        shm_size=shm_size,
        debug=debug,
    )
    if debug:
        console.info(f"debugpy waits for your IDE on 127.0.0.1:{DEBUG_PORT} (see docs/ide.md)")
    if workers > 1:
        return _train_workers(spec, workers)
    return execute(spec)


def _train_workers(spec: RunSpec, count: int) -> int:
    """N containers under MultiWorkerMirroredStrategy, on a private network of their own: TF's gRPC
    servers listen on every interface, so they are reachable from each other and from nothing else."""
    names = [f"{spec.name}-w{index}" for index in range(count)]
    cluster = {"worker": [f"{name}:{WORKER_PORT}" for name in names]}
    command = list(spec.command)
    if "--resume" not in command and "--run-name" not in command:
        command += ["--run-name", spec.name.removeprefix("tfdock-train-")]  # one run dir for all workers
    members = {
        f"worker {index}": dataclasses.replace(
            spec,
            name=name,
            command=tuple(command),
            network=spec.name,
            environment={
                **spec.environment,
                "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
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


def trainer_options(epochs: str, batch_size: str, resume: bool, profile: str) -> list[str]:
    """The trainer's options for what `invoke train` takes itself (others pass through after `--`)."""
    options = []
    for flag, value in (("--epochs", epochs), ("--batch-size", batch_size)):
        if value:
            options += [flag, str(whole_number(flag, value))]
    if resume:
        options.append("--resume")
    if profile:
        options += ["--profile", profile]
    return options


def validated_dataset(name: str) -> str:
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}", f"use one of: {', '.join(DATASETS)}")
    return name


def missing_dataset_files(data: Path) -> bool:
    if (data / NPZ_FILE).is_file():
        return False
    return not all((data / name).is_file() or (data / f"{name}.gz").is_file() for name in IDX_FILES)


def validated_shm_size(value: str) -> str:
    if not re.fullmatch(r"[1-9]\d*[bkmg]?", value.strip().lower()):
        raise UsageError(f"invalid --shm-size {value!r}", "use a size such as 2g, 512m or 1073741824")
    return value.strip().lower()


def _download(tag: str, dataset: str, data: Path) -> None:
    """The one step with network: fetch the dataset into the data dir (training mounts it read-only)."""
    console.info(f"{dataset} is not in {data}: downloading it (training itself runs without network)")
    command = ["python", "-m", "tfdock.data", "download", "--dataset", dataset, "--data-dir", OUTPUT_DIR]
    # The data dir is the writable mount here; the trainer never gets it writable.
    exit_code = execute(task_spec("download", tag, command, output_dir=data, network="bridge"))
    if exit_code != 0:
        raise UsageError(
            f"could not download {dataset} into {data} (exit {exit_code})",
            "put the four IDX files there yourself and pass --data-dir",
        )

"""`invoke train`: the host's half of a training run (image, data, GPUs, mounts); the container trains."""

from __future__ import annotations

import re
from pathlib import Path

from tfdock_host import console, gpus, image
from tfdock_host.errors import UsageError
from tfdock_host.run import DATA_DIR, DEBUG_PORT, OUTPUT_DIR, execute, task_spec
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
    trainer_args: list[str] | None = None,
) -> int:
    """Run `python -m tfdock.train` in the runtime image; returns its exit code."""
    dataset = validated_dataset(dataset or settings.dataset)
    gpu_requests = tuple(gpus.parse(gpus_spec or settings.gpus))
    # GPUs need TensorFlow's CUDA build; an explicit --variant wins (e.g. cpu with the CI GPU stand-in).
    variant = variant or ("gpu" if gpu_requests else settings.variant)
    shm_size = validated_shm_size(shm_size or settings.shm_size)
    data = settings.dataset_dir(dataset, data_dir)
    outputs = settings.host_path(output_dir or settings.output_dir)
    if data.exists() and not data.is_dir():
        raise UsageError(
            f"data dir {data} is a file", "point --data-dir at the directory holding the dataset"
        )
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
    return execute(spec)


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

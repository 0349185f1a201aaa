"""The project's settings: invoke.yaml, overridable by INVOKE_TFDOCK_* variables, as one frozen object.

Every value is checked once, when the object is made (an unknown key, in the file or the environment, is
one line naming the nearest known key); `apply` lays command-line options over it, the one place that
does. tasks.py gets the values from invoke's own config; noxfile.py loads the same file through `load()`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tfdock_host import contract as project_contract
from tfdock_host.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
SECTION = "tfdock"
ENV_PREFIX = "INVOKE_TFDOCK_"
VARIANTS = ("cpu", "gpu")
# The Dockerfile's own default (`ARG BASE_IMAGE`; a host test holds the two equal): invoke.yaml's
# `base_image: ""` means this one.
DEFAULT_BASE_IMAGE = "python:3.11-slim-bookworm"
IMAGE_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")


@dataclasses.dataclass(frozen=True)
class Settings:
    image: str = "tfdock"
    variant: str = "cpu"
    base_image: str = ""
    # The image pip runs in, on the build machine's own platform: "" = base_image (multi-arch, as the real
    # python image is); a single-architecture base for another platform (CI's arm64 twin) needs the build
    # machine's own here.
    installer_image: str = ""
    ca_bundle: str = ""
    docker_cli: str = ""
    dataset: str = ""
    data_dir: str = ""
    fashion_mnist_dir: str = ""
    output_dir: str = "outputs"
    reports_dir: str = "reports"
    shm_size: str = "2g"  # tf.data and NCCL need more than Docker's 64m
    gpus: str = "none"
    cpus: str = ""  # "" = no limit; else the training containers' CPU quota, e.g. 1 or 1.5
    platform: str = ""  # "" = the engine's own; linux/arm64 on an amd64 engine builds and runs emulated
    project: project_contract.Contract | None = None
    # An explicit variant (--variant) wins over "gpu because GPUs were asked for".
    variant_pinned: bool = False

    def __post_init__(self) -> None:
        for name, check in _CHECKS.items():
            object.__setattr__(self, name, check(getattr(self, name), f"{SECTION}.{name}", self))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """The settings from invoke.yaml's `tfdock` section (as invoke merged it with INVOKE_TFDOCK_*)."""
        known = [field.name for field in _FILE_FIELDS]
        for key in values:
            if key not in known:
                raise unknown_key_error(f"{SECTION}.{key}", [f"{SECTION}.{name}" for name in known])
        contract = values.get("project")
        texts: dict[str, Any] = {key: str(value) for key, value in values.items() if key != "project"}
        return cls(**texts, project=project_contract.parse(contract) if contract is not None else None)

    def apply(self, **options: str) -> Settings:
        """Command-line options over these settings: each given one (non-empty) checked as the option it
        is, e.g. `--shm-size`; `gpus` picks the gpu variant unless `variant` is given too."""
        given: dict[str, Any] = {name: value for name, value in options.items() if value}
        unknown = set(given) - {field.name for field in _FILE_FIELDS}
        if unknown:
            raise TypeError(f"not settings: {', '.join(sorted(unknown))}")
        for name, value in given.items():
            if name in _CHECKS:
                _CHECKS[name](value, "--" + name.replace("_", "-"), self)
        return dataclasses.replace(self, **given, variant_pinned=self.variant_pinned or "variant" in given)

    @property
    def contract(self) -> project_contract.Contract:
        if self.project is None:
            raise project_contract.ContractError(
                f"invoke.yaml declares no {project_contract.CONTRACT_KEY}",
                "declare the project's package, entry points and datasets (docs/contract.md)",
            )
        return self.project

    @functools.cached_property
    def gpu_requests(self) -> tuple[Any, ...]:
        """The `gpus` value as engine device requests (empty for none)."""
        from tfdock_host import gpus

        return tuple(gpus.parse(self.gpus))

    @property
    def run_variant(self) -> str:
        """The image variant a run with these settings' GPUs uses."""
        return self.variant_for(bool(self.gpu_requests))

    def variant_for(self, wants_gpus: bool) -> str:
        """GPUs need TensorFlow's CUDA build; a given --variant wins (e.g. cpu with the CI GPU stand-in)."""
        return "gpu" if wants_gpus and not self.variant_pinned else self.variant

    @property
    def nano_cpus(self) -> int | None:
        """The `cpus` quota as the engine takes it (billionths of a CPU); None: no limit."""
        return round(float(self.cpus) * 1e9) if self.cpus else None

    @property
    def dataset_name(self) -> str:
        return self.dataset or self.contract.default_dataset

    def host_path(self, value: str) -> Path:
        """A configured dir as an absolute host path (relative ones are relative to the project root)."""
        return (ROOT / Path(value).expanduser()).resolve()

    def dataset_dir(self, dataset: str = "", data_dir: str = "") -> Path:
        """Where a dataset's files are: the given or configured dir, else the dataset's declared default
        (data/<dataset> when there is no contract)."""
        if data_dir or self.data_dir:
            return self.host_path(data_dir or self.data_dir)
        name = dataset or self.dataset
        if self.project is None:
            return self.host_path(f"data/{name}")
        return self.host_path(self.contract.dataset(name or self.contract.default_dataset).dir)

    @property
    def data_dir_named(self) -> bool:
        """Whether the data dir was named (--data-dir, tfdock.data_dir): such a dir is never written into."""
        return bool(self.data_dir)


def unknown_key_error(key: str, known: Iterable[str]) -> UsageError:
    nearest = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    return UsageError(
        f"unknown setting {key}",
        f"did you mean {nearest[0]}?" if nearest else f"known: {', '.join(sorted(known))}",
    )


def validated_shm_size(value: str, origin: str = "--shm-size") -> str:
    if not re.fullmatch(r"[1-9]\d*[bkmg]?", value.strip().lower()):
        raise UsageError(f"invalid {origin} {value!r}", "use a size such as 2g, 512m or 1073741824")
    return value.strip().lower()


def _variant(value: str, origin: str, _settings: Settings) -> str:
    if value not in VARIANTS:
        raise UsageError(f"invalid {origin} {value!r}", f"use one of: {', '.join(VARIANTS)}")
    return value


def _image(value: str, origin: str, _settings: Settings) -> str:
    if not IMAGE_NAME.fullmatch(value):
        raise UsageError(f"invalid {origin} {value!r}", "use an image repository name, e.g. my-model")
    return value


def _gpus(value: str, origin: str, _settings: Settings) -> str:
    from tfdock_host import gpus

    gpus.parse(value)  # raises GpuSpecError, which names the value
    return value.strip()


def _cpus(value: str, origin: str, _settings: Settings) -> str:
    text = value.strip()
    try:
        quota = float(text) if text else None
    except ValueError:
        quota = 0.0
    if quota is not None and not (0 < quota < float("inf")):
        raise UsageError(f"invalid {origin} {value!r}", "use a number of CPUs > 0, e.g. 1 or 1.5")
    return text


def _dataset(value: str, origin: str, settings: Settings) -> str:
    if value and settings.project is not None:
        settings.project.dataset(value, origin)
    return value


def _base_image(value: str, _origin: str, _settings: Settings) -> str:
    return value.strip() or DEFAULT_BASE_IMAGE


def _shm(value: str, origin: str, _settings: Settings) -> str:
    return validated_shm_size(value, origin)


def _platform(value: str, origin: str, _settings: Settings) -> str:
    from tfdock_host.lock import ARCHITECTURES

    known = [f"linux/{arch}" for arch in ARCHITECTURES]
    if value.strip() and value.strip() not in known:
        raise UsageError(f"invalid {origin} {value!r}", f"use one of: {', '.join(known)}")
    return value.strip()


def _dir(value: str, origin: str, _settings: Settings) -> str:
    if not value.strip():
        raise UsageError(f"{origin} is empty", "name a directory, e.g. outputs")
    return value


_CHECKS = {
    "image": _image,
    "variant": _variant,
    "base_image": _base_image,
    "dataset": _dataset,
    "output_dir": _dir,
    "reports_dir": _dir,
    "shm_size": _shm,
    "gpus": _gpus,
    "cpus": _cpus,
    "platform": _platform,
}
_FILE_FIELDS = [field for field in dataclasses.fields(Settings) if field.name != "variant_pinned"]
# Every setting but the contract, as invoke's lowest config level: invoke.yaml lists only what a project
# changes, and INVOKE_TFDOCK_<KEY> overrides any of them (invoke reads variables for known keys only).
DEFAULTS: dict[str, str] = {
    field.name: str(field.default) for field in _FILE_FIELDS if field.name != "project"
}


def check_environment(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> None:
    """An INVOKE_TFDOCK_* variable that names no setting would be ignored by invoke: one line instead."""
    known = [ENV_PREFIX + "_".join(path).upper() for path in _leaf_paths(config)]
    for name in environ if environ is not None else os.environ:
        if name.startswith(ENV_PREFIX) and name not in known:
            raise unknown_key_error(name, known)


def _leaf_paths(values: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterable[tuple[str, ...]]:
    for key, value in values.items():
        if isinstance(value, Mapping):
            yield from _leaf_paths(value, (*prefix, str(key)))
        else:
            yield (*prefix, str(key))


def resolve(config: Mapping[str, Any]) -> Settings:
    """The settings from invoke's merged `tfdock` section, the environment checked too."""
    config = _plain(config)
    check_environment(config)
    return Settings.from_mapping(config)


def load() -> Settings:
    """Read invoke.yaml and INVOKE_TFDOCK_* the way invoke does, for code that runs outside a task."""
    from invoke.config import Config

    config = Config(defaults={**Config.global_defaults(), SECTION: DEFAULTS}, project_location=str(ROOT))
    config.load_project()
    config.load_shell_env()
    return resolve(config.get(SECTION, {}))


def _plain(values: Any) -> Any:
    """invoke's DataProxy as plain dicts and lists."""
    if isinstance(values, Mapping):
        return {key: _plain(value) for key, value in values.items()}
    return values

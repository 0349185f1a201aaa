"""The project's settings: invoke.yaml, overridable by INVOKE_TFDOCK_* variables, as one frozen object.

tasks.py gets them from invoke's own config; noxfile.py loads the same file through `load()`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Settings:
    image: str = "tfdock"
    variant: str = "cpu"
    base_image: str = "python:3.11-slim-bookworm"
    ca_bundle: str = ""
    docker_cli: str = ""
    dataset: str = "fashion-mnist"
    data_dir: str = ""
    fashion_mnist_dir: str = "/usr/share/datasets/fashion-mnist"
    output_dir: str = "outputs"
    reports_dir: str = "reports"
    shm_size: str = "2g"
    gpus: str = "none"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: str(value) for key, value in values.items() if key in known})

    def host_path(self, value: str) -> Path:
        """A configured dir as an absolute host path (relative ones are relative to the project root)."""
        return (ROOT / Path(value).expanduser()).resolve()

    def dataset_dir(self, dataset: str = "", data_dir: str = "") -> Path:
        """Where a dataset's files are: the given or configured dir, else data/<dataset>."""
        return self.host_path(data_dir or self.data_dir or f"data/{dataset or self.dataset}")


def load() -> Settings:
    """Read invoke.yaml and INVOKE_TFDOCK_* the way invoke does, for code that runs outside a task."""
    from invoke.config import Config

    config = Config(project_location=str(ROOT))
    config.load_project()
    config.load_shell_env()
    return Settings.from_mapping(config.get("tfdock", {}))

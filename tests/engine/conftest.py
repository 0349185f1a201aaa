"""Fixtures for the real-engine suite: the engine, the project's images, and `invoke` run as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tfdock_host import engine, image, run, settings

ROOT = settings.ROOT


@pytest.fixture(scope="session")
def project_settings() -> settings.Settings:
    return settings.load()


@pytest.fixture(scope="session")
def client():
    return engine.connect()


@pytest.fixture(scope="session")
def runtime_image(project_settings) -> str:
    return image.ensure(project_settings, project_settings.variant, "runtime")


@pytest.fixture(scope="session")
def dev_image(project_settings) -> str:
    return image.ensure(project_settings, project_settings.variant, "dev")


@pytest.fixture(scope="session")
def fashion_mnist(project_settings) -> Path:
    directory = Path(project_settings.fashion_mnist_dir)
    if not (directory / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"real Fashion-MNIST is missing from {directory}: apt-get install dataset-fashion-mnist")
    return directory


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A temp dir every user can traverse: pytest's tmp_path is 0700 and root's, and invoked as root the
    containers run as the image's user, who must read the data dirs made here."""
    path = Path(tempfile.mkdtemp(prefix="tfdock-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def invoke(*args: str, env: dict[str, str] | None = None, timeout: float = 900, user: str = ""):
    """`invoke ARGS` from the project root, as the shell would run it (optionally as another user)."""
    command = [sys.executable, "-m", "invoke", *args]
    if user:
        command = ["runuser", "-u", user, "--", *command]
    return subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def project_containers(client, task: str = "") -> list:
    labels = [f"{run.PROJECT_LABEL}=tfdock", *([f"{run.TASK_LABEL}={task}"] if task else [])]
    return client.containers.list(all=True, filters={"label": labels})

"""Records where the container suite ran (into the junit report) and proves it was inside a container."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest


def _in_container() -> bool:
    return Path("/.dockerenv").exists() or bool(os.environ.get("TFDOCK_IN_CONTAINER"))


@pytest.mark.skipif(
    not _in_container(), reason="not inside a container (no /.dockerenv, TFDOCK_IN_CONTAINER unset)"
)
def test_suite_runs_inside_the_image(record_property: Callable[[str, object], None]) -> None:
    record_property("hostname", socket.gethostname())
    record_property("image", os.environ.get("TFDOCK_IMAGE", ""))
    assert _in_container()

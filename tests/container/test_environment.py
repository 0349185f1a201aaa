"""Records where the container suite ran (into the junit report) and proves it ran inside the project's
image, started by the engine: not merely that the image's marker variable is set."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.mark.skipif(
    not os.environ.get("TFDOCK_IN_CONTAINER"),
    reason="not in the project's image (TFDOCK_IN_CONTAINER, set by its Dockerfile, is unset)",
)
def test_suite_runs_inside_the_image(record_property: Callable[[str, object], None]) -> None:
    record_property("hostname", socket.gethostname())
    record_property("image", os.environ.get("TFDOCK_IMAGE", ""))
    # Docker marks the filesystems it makes with /.dockerenv, Podman with /run/.containerenv.
    markers = [Path("/.dockerenv"), Path("/run/.containerenv")]
    assert any(marker.is_file() for marker in markers), "no engine's marker: no engine made this filesystem"
    assert sys.prefix == "/opt/venv", f"not the image's interpreter: {sys.prefix}"
    # A PID namespace of its own: PID 1 is the container's command (or docker-init), not the host's init.
    assert Path("/proc/1/comm").read_text().strip() not in ("systemd", "init"), "PID 1 is a host's init"

"""Downloads from a local HTTP mirror serving the real files: verified, atomic, one-line failures."""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from containerlib import run_module

from tfdock import data
from tfdock.errors import DataError


@pytest.fixture
def mirror(fashion_dir: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, served dir): a 127.0.0.1 HTTP server over copies of the real .gz files."""
    served = tmp_path / "mirror"
    served.mkdir()
    for name in data.SHA256["fashion-mnist"]:
        shutil.copy(fashion_dir / name, served / name)
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", served
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_download_verifies_and_loads(mirror: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = mirror
    target = tmp_path / "data"
    assert len(data.download("fashion-mnist", target, url)) == 4
    assert data.load(target, "fashion-mnist").test_images.shape == (10000, 28, 28)
    assert data.download("fashion-mnist", target, url) == []  # already there and verified: nothing fetched
    assert sorted(path.name for path in target.iterdir()) == sorted(data.SHA256["fashion-mnist"])


def test_corrupted_file_from_mirror_leaves_nothing_that_looks_valid(
    mirror: tuple[str, Path], tmp_path: Path
) -> None:
    url, served = mirror
    damaged = served / "train-labels-idx1-ubyte.gz"
    content = bytearray(damaged.read_bytes())
    content[len(content) // 2] ^= 0xFF
    damaged.write_bytes(bytes(content))
    target = tmp_path / "data"
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: sha256 mismatch"):
        data.download("fashion-mnist", target, url)
    left = sorted(path.name for path in target.iterdir())
    assert "train-labels-idx1-ubyte.gz" not in left
    assert not [name for name in left if name.startswith(".")], f"temp files left behind: {left}"


def test_missing_file_on_mirror_is_an_http_error(mirror: tuple[str, Path], tmp_path: Path) -> None:
    url, served = mirror
    (served / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="HTTP 404"):
        data.download("fashion-mnist", tmp_path / "data", url)
    assert not (tmp_path / "data" / "t10k-images-idx3-ubyte.gz").exists()


def test_offline_download_says_how_to_get_the_files(tmp_path: Path, single_line_error: Callable) -> None:
    with socket.socket() as probe:  # a port nobody listens on: connection refused, like a machine offline
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    result = run_module(
        "tfdock.data",
        ["download", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path)],
        timeout=300,  # bounds a hang, on a loaded machine too
        env_extra={data.MIRROR_ENV: f"http://127.0.0.1:{closed_port}/"},
    )
    line = single_line_error(result)
    assert "cannot reach" in line and "dataset-fashion-mnist" in line and "--data-dir" in line
    assert list(tmp_path.iterdir()) == []


def test_download_cli_uses_the_mirror_from_the_environment(mirror: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = mirror
    result = run_module(
        "tfdock.data", ["download", "--data-dir", str(tmp_path)], env_extra={data.MIRROR_ENV: url}
    )
    assert result.returncode == 0, result.stderr
    assert "4 file(s) downloaded" in result.stdout

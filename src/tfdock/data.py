"""Dataset files: IDX/npz readers with validation, verified downloads, and the tf.data pipeline.

Usage: python -m tfdock.data download --dataset fashion-mnist --data-dir DIR [--mirror URL]
       python -m tfdock.data check --data-dir DIR
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import struct
import sys
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfdock import cli
from tfdock.errors import DataError
from tfdock.files import atomic_path

IMAGE_SIDE = 28
NUM_CLASSES = 10
IMAGES_MAGIC = 2051  # IDX: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # IDX: unsigned bytes, 1 dimension
TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
NPZ_FILE = "mnist.npz"  # Keras's packaging of MNIST
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

MIRROR_ENV = "TFDOCK_DATA_MIRROR"
MIRRORS = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
# Accepted sha256 of each .gz file. MNIST: the CVDF mirror's files (as pinned by tensorflow_datasets).
# Fashion-MNIST: the upstream release, then Debian's dataset-fashion-mnist repack, which holds the same
# decompressed bytes but gzips without the original file name in the header, so its digests differ.
SHA256: dict[str, dict[str, tuple[str, ...]]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",),
        "train-labels-idx1-ubyte.gz": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",),
        "t10k-images-idx3-ubyte.gz": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",),
        "t10k-labels-idx1-ubyte.gz": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        ),
        "train-labels-idx1-ubyte.gz": (
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        ),
        "t10k-images-idx3-ubyte.gz": (
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
        ),
    },
}
OFFLINE_HINTS = {
    "mnist": "copy the four *-ubyte.gz files (or Keras's mnist.npz) into the data dir by other means",
    "fashion-mnist": "install the Debian package dataset-fashion-mnist (files in "
    "/usr/share/datasets/fashion-mnist) and pass --data-dir /usr/share/datasets/fashion-mnist",
}


@dataclasses.dataclass(frozen=True)
class Splits:
    """A dataset in memory: uint8 images N x 28 x 28 and uint8 labels N, for train and test."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except PermissionError:
        raise DataError(f"{path}: permission denied", "make the file readable by this user") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a file") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DataError(f"{path.name}: truncated or corrupt gzip ({error})", "re-download the file") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one IDX file (gzipped or not), checking it is exactly what its header promises."""
    data = _read_bytes(path)
    dims = 3 if magic == IMAGES_MAGIC else 1
    header_size = 4 * (1 + dims)
    if len(data) < header_size:
        raise DataError(
            f"{path.name}: {len(data)} bytes, too short for an IDX header", "re-download the file"
        )
    found_magic, *shape = struct.unpack(f">{1 + dims}I", data[:header_size])
    if found_magic != magic:
        raise DataError(
            f"{path.name}: bad magic number {found_magic} (expected {magic})", "re-download the file"
        )
    if dims == 3 and shape[1:] != [IMAGE_SIDE, IMAGE_SIDE]:
        raise DataError(f"{path.name}: images are {shape[1]}x{shape[2]}, expected {IMAGE_SIDE}x{IMAGE_SIDE}")
    expected = header_size + int(np.prod(shape))
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(
            f"{path.name}: {problem}: {len(data)} bytes, the header's count of {shape[0]} needs {expected}",
            "re-download the file",
        )
    array = np.frombuffer(data, np.uint8, offset=header_size).reshape(shape)
    if dims == 1:
        _check_label_range(array, path.name)
    return array


def _check_label_range(labels: np.ndarray, name: str) -> None:
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise DataError(f"{name}: label {int(labels.max())} out of range 0..{NUM_CLASSES - 1}")


def _check_pair(images: np.ndarray, labels: np.ndarray, names: str) -> None:
    if len(images) != len(labels):
        raise DataError(f"{names}: {len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise DataError(f"{names}: no examples")


def read_npz(path: Path) -> Splits:
    """Read Keras's mnist.npz layout (x_train, y_train, x_test, y_test) with the same checks as IDX."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                raise DataError(f"{path.name}: missing arrays {', '.join(missing)} (expected {NPZ_KEYS})")
            arrays = {key: archive[key] for key in NPZ_KEYS}
    except PermissionError:
        raise DataError(f"{path}: permission denied", "make the file readable by this user") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(
            f"{path.name}: not a readable npz archive ({error})", "re-download the file"
        ) from None
    for key in NPZ_KEYS:
        array = arrays[key]
        want_rank = 3 if key.startswith("x") else 1
        if array.dtype != np.uint8 or array.ndim != want_rank or array.shape[1:] not in ((), (28, 28)):
            raise DataError(
                f"{path.name}: {key} is {array.dtype} {array.shape}, expected uint8 "
                + ("N x 28 x 28" if want_rank == 3 else "N")
            )
        if want_rank == 1:
            _check_label_range(array, f"{path.name}:{key}")
    _check_pair(arrays["x_train"], arrays["y_train"], f"{path.name}: train")
    _check_pair(arrays["x_test"], arrays["y_test"], f"{path.name}: test")
    return Splits(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])


def _find(data_dir: Path, name: str) -> Path | None:
    for candidate in (data_dir / name, data_dir / f"{name}.gz"):
        if candidate.exists():
            return candidate
    return None


def check_data_dir(data_dir: Path) -> None:
    if not data_dir.exists():
        raise DataError(f"data dir {data_dir} does not exist", "pass --data-dir with the dataset files")
    if not data_dir.is_dir():
        raise DataError(f"data dir {data_dir} is not a directory", "pass --data-dir with the dataset files")


def load(data_dir: Path, dataset: str) -> Splits:
    """Load the four IDX files (each .gz or not) from data_dir, else its mnist.npz."""
    check_data_dir(data_dir)
    names = (*TRAIN_FILES, *TEST_FILES)
    paths = {name: _find(data_dir, name) for name in names}
    missing = [f"{name}[.gz]" for name, path in paths.items() if path is None]
    if missing and (data_dir / NPZ_FILE).exists():
        return read_npz(data_dir / NPZ_FILE)
    if missing:
        raise DataError(
            f"missing {', '.join(missing)} in {data_dir}",
            f"run `invoke train --download` or `python -m tfdock.data download --dataset {dataset} "
            f"--data-dir {data_dir}`",
        )
    arrays = []
    for images_name, labels_name in (TRAIN_FILES, TEST_FILES):
        images = read_idx(paths[images_name], IMAGES_MAGIC)  # type: ignore[arg-type]
        labels = read_idx(paths[labels_name], LABELS_MAGIC)  # type: ignore[arg-type]
        _check_pair(images, labels, f"{images_name} / {labels_name}")
        arrays += [images, labels]
    return Splits(*arrays)


def split_validation(
    images: np.ndarray, labels: np.ndarray, fraction: float, seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Carve a seeded, fixed validation subset out of the training arrays; returns (train, validation)."""
    order = np.random.default_rng(seed).permutation(len(images))
    held_out = round(len(images) * fraction)
    train, validation = order[held_out:], order[:held_out]
    return (images[train], labels[train]), (images[validation], labels[validation])


# --- downloads -----------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, destination: Path, accepted: Sequence[str], offline_hint: str) -> None:
    """Stream url to a temp file next to destination; it is renamed into place only if its sha256 matches."""
    try:
        with atomic_path(destination) as temp:
            digest = hashlib.sha256()
            with urllib.request.urlopen(url, timeout=30) as response, temp.open("wb") as file:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    digest.update(chunk)
                    file.write(chunk)
                    cli.stop_signals.raise_if_pending()
                file.flush()
                os.fsync(file.fileno())
            if digest.hexdigest() not in accepted:
                raise DataError(
                    f"{destination.name}: sha256 mismatch from {url} (got {digest.hexdigest()[:16]}…)",
                    "the mirror served a damaged or different file; try again or another --mirror",
                )
    except urllib.error.HTTPError as error:
        raise DataError(f"cannot download {url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise DataError(f"cannot reach {url} ({reason})", offline_hint) from None


def download(dataset: str, data_dir: Path, mirror: str | None = None) -> list[Path]:
    """Fetch the dataset's four .gz files into data_dir, skipping those already present and verified."""
    base = (mirror or os.environ.get(MIRROR_ENV) or MIRRORS[dataset]).rstrip("/") + "/"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create data dir {data_dir} ({error.strerror or error})") from None
    check_data_dir(data_dir)
    if not os.access(data_dir, os.W_OK):
        raise DataError(f"data dir {data_dir} is not writable", "mount it read-write to download into it")
    offline_hint = f"offline? {OFFLINE_HINTS[dataset]}"
    fetched = []
    for name, accepted in SHA256[dataset].items():
        destination = data_dir / name
        if destination.exists() and _sha256(destination) in accepted:
            continue
        _fetch(base + name, destination, accepted, offline_hint)
        fetched.append(destination)
    return fetched


def _command(argv: Sequence[str] | None) -> None:
    parser = cli.ArgumentParser(
        prog="tfdock.data", description="Download or check MNIST-style dataset files."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("download", help="download and sha256-verify the four .gz files")
    get.add_argument("--dataset", choices=sorted(MIRRORS), default="fashion-mnist")
    get.add_argument("--data-dir", type=Path, default=Path("/data"))
    get.add_argument("--mirror", help=f"base URL instead of the dataset's mirror (env {MIRROR_ENV})")
    check = commands.add_parser("check", help="load and validate the files in a data dir")
    check.add_argument("--data-dir", type=Path, default=Path("/data"))
    check.add_argument("--dataset", choices=sorted(MIRRORS), default="fashion-mnist")
    args = parser.parse_args(argv)
    if args.command == "download":
        fetched = download(args.dataset, args.data_dir, args.mirror)
        shown = cli.as_the_host_sees(str(args.data_dir))
        print(f"{args.dataset}: {len(fetched)} file(s) downloaded, all 4 verified in {shown}")
    else:
        splits = load(args.data_dir, args.dataset)
        print(
            f"{args.data_dir}: {len(splits.train_images)} train and {len(splits.test_images)} test images, ok"
        )


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(_command, argv)


if __name__ == "__main__":
    sys.exit(main())

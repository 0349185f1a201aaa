"""IDX and npz readers: real data loads; each kind of damage is a one-line DataError naming the file."""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from containerlib import idx_bytes, run_module, write_idx_set

from tfdock import data
from tfdock.errors import DataError

TRAIN_IMAGES, TRAIN_LABELS = data.TRAIN_FILES


def test_real_fashion_mnist_loads_with_published_sizes(fashion: data.Splits) -> None:
    assert fashion.train_images.shape == (60000, 28, 28) and fashion.train_images.dtype == np.uint8
    assert fashion.test_images.shape == (10000, 28, 28)
    assert np.bincount(fashion.train_labels).tolist() == [6000] * 10  # Fashion-MNIST is exactly balanced


@pytest.mark.parametrize("compress", [True, False], ids=["gzipped", "raw"])
def test_written_idx_files_read_back_identically(
    tmp_path: Path, small_fashion: data.Splits, compress: bool
) -> None:
    loaded = data.load(write_idx_set(tmp_path, small_fashion, compress), "fashion-mnist")
    np.testing.assert_array_equal(loaded.train_images, small_fashion.train_images)
    np.testing.assert_array_equal(loaded.test_labels, small_fashion.test_labels)


def _rewrite(path: Path, change: Callable[[bytes], bytes]) -> None:
    path.write_bytes(gzip.compress(change(gzip.decompress(path.read_bytes()))))


def _replace_header_word(index: int, value: int) -> Callable[[bytes], bytes]:
    return lambda raw: raw[: 4 * index] + value.to_bytes(4, "big") + raw[4 * index + 4 :]


CORRUPTIONS: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "empty file": (TRAIN_LABELS, lambda p: p.write_bytes(b""), "too short for an IDX header"),
    "empty gzip payload": (TRAIN_LABELS, lambda p: p.write_bytes(gzip.compress(b"")), "too short for an IDX"),
    "truncated gzip": (
        TRAIN_IMAGES,
        lambda p: p.write_bytes(p.read_bytes()[:5000]),
        "truncated or corrupt gzip",
    ),
    "corrupt gzip": (
        TRAIN_IMAGES,
        lambda p: p.write_bytes(p.read_bytes()[:2000] + bytes(500) + p.read_bytes()[2500:]),
        "truncated or corrupt gzip",
    ),
    "not gzip at all": (TRAIN_LABELS, lambda p: p.write_bytes(b"hello, not a gzip file"), "corrupt gzip"),
    "labels magic in an images file": (
        TRAIN_IMAGES,
        lambda p: _rewrite(p, _replace_header_word(0, 2049)),
        "bad magic number 2049 (expected 2051)",
    ),
    "images are 32x28": (
        TRAIN_IMAGES,
        lambda p: _rewrite(p, _replace_header_word(2, 32)),
        "images are 32x28",
    ),
    "header count larger than data": (
        TRAIN_IMAGES,
        lambda p: _rewrite(p, _replace_header_word(1, 601)),
        "truncated",
    ),
    "trailing bytes": (TRAIN_LABELS, lambda p: _rewrite(p, lambda raw: raw + b"\0\0"), "trailing bytes"),
    "label out of range": (
        TRAIN_LABELS,
        lambda p: _rewrite(p, lambda raw: raw[:-1] + bytes([10])),
        "label 10 out of range",
    ),
    "fewer labels than images": (
        TRAIN_LABELS,
        lambda p: _rewrite(p, lambda raw: _replace_header_word(1, 599)(raw)[:-1]),
        "600 images but 599 labels",
    ),
    "missing file": (TRAIN_LABELS, lambda p: p.unlink(), "missing train-labels-idx1-ubyte[.gz]"),
    "directory in place of a file": (TRAIN_LABELS, lambda p: (p.unlink(), p.mkdir()), "is a directory"),
}


@pytest.mark.parametrize("case", CORRUPTIONS, ids=list(CORRUPTIONS))
def test_damaged_idx_file_is_a_data_error_naming_it(
    tmp_path: Path, small_fashion: data.Splits, case: str
) -> None:
    name, damage, expected = CORRUPTIONS[case]
    write_idx_set(tmp_path, small_fashion)
    damage(tmp_path / f"{name}.gz")
    with pytest.raises(DataError) as caught:
        data.load(tmp_path, "fashion-mnist")
    message = str(caught.value)
    assert expected in message and "\n" not in message
    assert name in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file_is_a_data_error(tmp_path: Path, small_fashion: data.Splits) -> None:
    write_idx_set(tmp_path, small_fashion)
    (tmp_path / f"{TRAIN_IMAGES}.gz").chmod(0)
    with pytest.raises(DataError, match="permission denied"):
        data.load(tmp_path, "fashion-mnist")


def test_missing_and_non_directory_data_dirs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        data.load(tmp_path / "nowhere", "fashion-mnist")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(DataError, match="is not a directory"):
        data.load(tmp_path / "a-file", "fashion-mnist")


def _write_npz(path: Path, splits: data.Splits, **overrides: np.ndarray) -> None:
    arrays = {
        "x_train": splits.train_images,
        "y_train": splits.train_labels,
        "x_test": splits.test_images,
        "y_test": splits.test_labels,
        **overrides,
    }
    np.savez(path, **arrays)


def test_keras_mnist_npz_loads(tmp_path: Path, small_fashion: data.Splits) -> None:
    _write_npz(tmp_path / data.NPZ_FILE, small_fashion)
    loaded = data.load(tmp_path, "mnist")
    np.testing.assert_array_equal(loaded.test_images, small_fashion.test_images)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"y_test": None}, "missing arrays y_test"),
        ({"x_train": "float"}, "x_train is float32"),
        ({"x_test": "flat"}, "x_test is uint8 (200, 784)"),
        ({"y_train": "short"}, "600 images but 599 labels"),
    ],
    ids=["missing key", "float images", "flattened images", "count mismatch"],
)
def test_bad_npz_is_a_data_error(
    tmp_path: Path, small_fashion: data.Splits, overrides: dict, expected: str
) -> None:
    arrays = {
        "x_train": small_fashion.train_images,
        "y_train": small_fashion.train_labels,
        "x_test": small_fashion.test_images,
        "y_test": small_fashion.test_labels,
    }
    for key, how in overrides.items():
        if how is None:
            del arrays[key]
        elif how == "float":
            arrays[key] = arrays[key].astype(np.float32)
        elif how == "flat":
            arrays[key] = arrays[key].reshape(len(arrays[key]), -1)
        else:
            arrays[key] = arrays[key][:-1]
    np.savez(tmp_path / data.NPZ_FILE, **arrays)
    with pytest.raises(DataError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        data.load(tmp_path, "mnist")


def test_npz_that_is_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / data.NPZ_FILE).write_bytes(idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(DataError, match="not a readable npz"):
        data.load(tmp_path, "mnist")


def test_validation_split_is_carved_from_train_only(small_fashion: data.Splits) -> None:
    (train, _), (held_out, _) = data.split_validation(
        small_fashion.train_images, small_fashion.train_labels, 0.1, 0
    )
    assert len(train) == 540 and len(held_out) == 60
    # disjoint: no training image reappears in the validation set
    train_rows = {image.tobytes() for image in train}
    assert not any(image.tobytes() in train_rows for image in held_out)


def test_check_cli_reports_damage_in_one_line(
    tmp_path: Path, small_fashion: data.Splits, single_line_error: Callable
) -> None:
    write_idx_set(tmp_path, small_fashion)
    CORRUPTIONS["labels magic in an images file"][1](tmp_path / f"{TRAIN_IMAGES}.gz")
    line = single_line_error(run_module("tfdock.data", ["check", "--data-dir", str(tmp_path)]))
    assert line == (f"error: {TRAIN_IMAGES}.gz: bad magic number 2049 (expected 2051) — re-download the file")

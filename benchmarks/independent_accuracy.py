"""Re-score an exported tfdock run with code that shares nothing with tfdock: the IDX test files parsed here
with gzip and numpy, the SavedModel's `serve_uint8` endpoint and model.keras loaded with plain TF/Keras.

    python benchmarks/independent_accuracy.py RUN_DIR DATA_DIR OUTPUT_JSON

Writes {"saved_model": accuracy, "model_keras": accuracy, "test_images": N} to OUTPUT_JSON.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np


def read_idx(path: Path) -> np.ndarray:
    """An IDX file per its spec: zero, zero, dtype code (0x08 = uint8), rank, big-endian uint32 dims, data."""
    raw = gzip.decompress(path.read_bytes())
    if raw[:3] != b"\0\0\x08":
        raise SystemExit(f"{path}: not a uint8 IDX file")
    rank = raw[3]
    shape = tuple(int(side) for side in np.frombuffer(raw, ">u4", rank, offset=4))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * rank).reshape(shape)


def main() -> None:
    run_dir, data_dir, output = (Path(arg) for arg in sys.argv[1:4])
    images = read_idx(data_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(data_dir / "t10k-labels-idx1-ubyte.gz")

    import keras
    import tensorflow as tf

    served = tf.saved_model.load(str(run_dir / "saved_model"))
    served_probabilities = np.concatenate(
        [served.serve_uint8(tf.constant(chunk)).numpy() for chunk in np.array_split(images, 10)]
    )
    keras_probabilities = keras.models.load_model(run_dir / "model.keras").predict(images, verbose=0)
    scores = {
        "saved_model": float(np.mean(served_probabilities.argmax(axis=1) == labels)),
        "model_keras": float(np.mean(keras_probabilities.argmax(axis=1) == labels)),
        "test_images": len(labels),
    }
    output.write_text(json.dumps(scores, indent=2) + "\n")
    print(json.dumps(scores))


if __name__ == "__main__":
    main()

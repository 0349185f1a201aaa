"""Train a small convnet (the size of keras-io's mnist_convnet) on MNIST-format IDX files.

Usage: python -m minimal_example.train --data-dir DIR --output-dir DIR [--epochs N] [--batch-size N]
Writes OUTPUT_DIR/<run>/model.keras and metrics.json. Exit 0 done, 2 bad input (one `error:` line),
130/143 interrupted.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class InputError(Exception):
    """A mistake in what the user gave: one line, exit 2."""


def read_idx(directory: Path, name: str) -> np.ndarray:
    for path, opener in ((directory / f"{name}.gz", gzip.open), (directory / name, open)):
        if path.is_file():
            try:
                with opener(path, "rb") as file:
                    raw = file.read()
            except (OSError, EOFError) as error:
                raise InputError(f"cannot read {path}: {error}") from None
            if len(raw) < 8 or raw[:2] != b"\0\0":
                raise InputError(f"{path} is not an IDX file")
            dims = raw[3]
            shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
            data = np.frombuffer(raw, np.uint8, offset=4 + 4 * dims)
            if data.size != int(np.prod(shape)):
                raise InputError(f"{path} holds {data.size} values, its header says {shape}")
            return data.reshape(shape)
    raise InputError(f"{directory} has no {name}(.gz): put the dataset's four IDX files there")


def load(directory: Path, split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    images, labels = (read_idx(directory, name) for name in FILES[split])
    if len(images) != len(labels):
        raise InputError(f"{split}: {len(images)} images but {len(labels)} labels in {directory}")
    return (images[:limit, :, :, None].astype("float32") / 255.0), labels[:limit].astype("int64")


def build_model():
    import keras

    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def train(args: argparse.Namespace) -> Path:
    import tensorflow as tf

    x_train, y_train = load(args.data_dir, "train", args.limit)
    x_test, y_test = load(args.data_dir, "test", args.limit)
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}"))
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if cluster else tf.distribute.get_strategy()
    chief = cluster.get("task", {}).get("index", 0) == 0
    with strategy.scope():
        model = build_model()
        model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    started = time.monotonic()
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=2)
    seconds = time.monotonic() - started
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    # Every worker saves (a collective op); only the chief's copy lands in the outputs dir.
    run_dir = args.output_dir / args.run_name if chief else Path(tempfile.mkdtemp())
    run_dir.mkdir(parents=True, exist_ok=True)
    partial = run_dir / "model.partial.keras"
    model.save(partial)
    partial.replace(run_dir / "model.keras")
    metrics = {
        "test_accuracy": float(accuracy),
        "test_loss": float(loss),
        "epochs_completed": len(history.history["loss"]),
        "training_seconds": seconds,
        "images_per_second": len(x_train) * args.epochs / seconds,
    }
    (run_dir / "metrics.json.tmp").write_text(json.dumps(metrics, indent=2))
    (run_dir / "metrics.json.tmp").replace(run_dir / "metrics.json")
    print(f"test accuracy {accuracy:.4f} after {args.epochs} epochs, {seconds:.1f} s of training")
    return run_dir


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minimal_example.train", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/data"))
    parser.add_argument("--output-dir", type=Path, default=Path("/outputs"))
    parser.add_argument("--epochs", type=positive, default=2)
    parser.add_argument("--batch-size", type=positive, default=128)
    parser.add_argument("--run-name", default=time.strftime("%Y%m%d-%H%M%S"))
    parser.add_argument("--limit", type=positive, help="use the first N images of each split (tests)")
    args = parser.parse_args(argv)  # a bad flag: argparse's one `error:` line, exit 2
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        train(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

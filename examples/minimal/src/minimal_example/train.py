"""Train a small convnet (the size of keras-io's mnist_convnet) on MNIST-format IDX files.

Usage: python -m minimal_example.train --data-dir DIR --output-dir DIR [--epochs N] [--batch-size N]
Writes OUTPUT_DIR/<run>/model.keras and metrics.json; exits 0, 2 on bad input (one `error:` line), 130/143.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import sys
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
    import keras
    import tensorflow as tf

    x_train, y_train = load(args.data_dir, "train", args.limit)
    x_test, y_test = load(args.data_dir, "test", args.limit)
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}"))
    # Under TF_CONFIG (`invoke train --workers N`) every worker takes its share of each global batch.
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if cluster else tf.distribute.get_strategy()
    chief = cluster.get("task", {}).get("index", 0) == 0
    global_batch = args.batch_size * strategy.num_replicas_in_sync
    with strategy.scope():
        model, optimizer = build_model(), keras.optimizers.Adam()
    batches = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(len(x_train), seed=0)
    batches = strategy.experimental_distribute_dataset(batches.batch(global_batch, drop_remainder=True))

    def replica_step(images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            losses = keras.losses.sparse_categorical_crossentropy(labels, model(images, training=True))
            loss = tf.reduce_sum(losses) / global_batch
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    @tf.function
    def step(images: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        return strategy.reduce("SUM", strategy.run(replica_step, (images, labels)), axis=None)

    # (Keras 3's model.fit does not run under MultiWorkerMirroredStrategy: keras-team/keras#20585.)
    started = time.monotonic()
    for epoch in range(args.epochs):
        losses = [float(step(images, labels)) for images, labels in batches]
        print(f"epoch {epoch + 1}/{args.epochs} loss {np.mean(losses):.4f}", flush=True)
    seconds = time.monotonic() - started
    predicted = np.concatenate(
        [np.argmax(model(x_test[i : i + 1024]), axis=1) for i in range(0, len(x_test), 1024)]
    )
    accuracy = float(np.mean(predicted == y_test))
    run_dir = args.output_dir / args.run_name
    if chief:  # the other workers' copies are the same: only the chief writes
        run_dir.mkdir(parents=True, exist_ok=True)
        model.save(run_dir / "model.partial.keras")
        (run_dir / "model.partial.keras").replace(run_dir / "model.keras")
        metrics = {"test_accuracy": accuracy, "epochs_completed": args.epochs, "training_seconds": seconds,
                   "images_per_second": len(x_train) * args.epochs / seconds}  # fmt: skip
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

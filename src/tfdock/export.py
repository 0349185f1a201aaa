"""The run's exports — model.keras and a SavedModel — and loading either back for inference.

Both take raw pixels 0-255 (the preprocessing is inside the model) and return softmax probabilities.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfdock import model as cnn
from tfdock.config import TrainConfig
from tfdock.data import IMAGE_SIDE
from tfdock.errors import ModelError
from tfdock.files import atomic_path

KERAS_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"


@contextlib.contextmanager
def _float32_policy() -> Iterator[None]:
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _serving_copy(trained: keras.Model, config: TrainConfig) -> keras.Model:
    """A float32 copy of Keras's own layers outside any distribution strategy, so serving needs neither
    tfdock nor a strategy; as evaluated in training (cnn.for_inference)."""
    with _float32_policy():
        plain = cnn.build(config, serving=True)
        plain.set_weights(trained.get_weights())
        return cnn.for_inference(plain, config)


def save(trained: keras.Model, config: TrainConfig, run_dir: Path) -> None:
    plain = _serving_copy(trained, config)
    with atomic_path(run_dir / KERAS_FILE) as temp:
        plain.save(temp)

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name="pixels")])
    def serve(pixels: tf.Tensor) -> tf.Tensor:
        # Any rank whose trailing elements form 28x28 images: N x 28 x 28 or N x 28 x 28 x 1.
        return plain(tf.reshape(pixels, [-1, IMAGE_SIDE, IMAGE_SIDE]), training=False)

    # uint8 pixels through serve's own graph: the SavedModel holds the model (with the default's 10 views)
    # once, not twice, and is written in 2.4-2.9 s rather than 3.5-4.0 (docs/recipe.md).
    @tf.function(input_signature=[tf.TensorSpec(None, tf.uint8, name="pixels")])
    def serve_uint8(pixels: tf.Tensor) -> tf.Tensor:
        return serve(tf.cast(pixels, tf.float32))

    archive = keras.export.ExportArchive()
    archive.track(plain)
    archive.add_endpoint("serve", serve)
    archive.add_endpoint("serve_uint8", serve_uint8)
    with atomic_path(run_dir / SAVED_MODEL_DIR) as temp:
        archive.write_out(str(temp), verbose=False)


def is_saved_model(path: Path) -> bool:
    return (path / "saved_model.pb").is_file()


def load(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Loads model.keras, a SavedModel dir or a run dir; returns pixels (N x 28 x 28) -> probabilities."""
    if (path / KERAS_FILE).is_file():
        path = path / KERAS_FILE
    if not path.exists():
        raise ModelError(
            f"model {path} does not exist", f"pass a run dir, its {KERAS_FILE} or {SAVED_MODEL_DIR}/"
        )
    try:
        if is_saved_model(path):
            serving = tf.saved_model.load(str(path))
            return lambda pixels: serving.serve(tf.constant(pixels, tf.float32)).numpy()
        model = keras.models.load_model(path)
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"{path}: cannot load a model ({first_line})") from None
    return lambda pixels: model.predict(pixels.astype(np.float32), verbose=0, batch_size=1000)

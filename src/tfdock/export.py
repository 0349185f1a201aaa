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
PREDICT_BATCH_SIZE = 1000


@contextlib.contextmanager
def _float32_policy() -> Iterator[None]:
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


class Exported:
    """The model as exported: a float32 copy of Keras's own layers outside any distribution strategy (so
    serving needs neither tfdock nor a strategy) with the views it trained on (cnn.for_inference), traced
    once: the run scores the test set with the very function its SavedModel serves."""

    def __init__(self, trained: keras.Model, config: TrainConfig) -> None:
        with _float32_policy():
            plain = cnn.build(config, serving=True)
            plain.set_weights(trained.get_weights())
            self.model = cnn.for_inference(plain, config)

        @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name="pixels")])
        def serve(pixels: tf.Tensor) -> tf.Tensor:
            # Any rank whose trailing elements form 28x28 images: N x 28 x 28 or N x 28 x 28 x 1.
            return self.model(tf.reshape(pixels, [-1, IMAGE_SIDE, IMAGE_SIDE]), training=False)

        self.serve = serve.get_concrete_function()

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities for N x 28 x 28 pixels 0-255."""
        return _in_batches(self.serve, pixels)

    def save(self, run_dir: Path) -> None:
        with atomic_path(run_dir / KERAS_FILE) as temp:
            self.model.save(temp)

        # uint8 pixels through serve's own graph: the SavedModel holds the model (with the default's 10
        # views) once, not twice.
        @tf.function(input_signature=[tf.TensorSpec(None, tf.uint8, name="pixels")])
        def serve_uint8(pixels: tf.Tensor) -> tf.Tensor:
            return self.serve(tf.cast(pixels, tf.float32))

        from_uint8 = serve_uint8.get_concrete_function()
        # Traced functions and the weights alone: tf.saved_model.save traces a tf.function again for its own
        # context, and Keras's ExportArchive walks every layer; each cost about 1 s (docs/recipe.md).
        module = tf.Module()
        module.weights = [weight.value for weight in self.model.weights]
        module.serve, module.serve_uint8 = self.serve, from_uint8
        signatures = {"serving_default": self.serve, "serve": self.serve, "serve_uint8": from_uint8}
        with atomic_path(run_dir / SAVED_MODEL_DIR) as temp:
            tf.saved_model.save(module, str(temp), signatures=signatures)


def _in_batches(serve: Callable[[tf.Tensor], tf.Tensor], pixels: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [
            serve(tf.constant(pixels[start : start + PREDICT_BATCH_SIZE], tf.float32)).numpy()
            for start in range(0, len(pixels), PREDICT_BATCH_SIZE)
        ]
    )


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
            return lambda pixels: _in_batches(serving.serve, pixels)
        model = keras.models.load_model(path)
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"{path}: cannot load a model ({first_line})") from None
    return lambda pixels: model.predict(pixels.astype(np.float32), verbose=0, batch_size=PREDICT_BATCH_SIZE)

"""The CNN, with its preprocessing inside so that it takes raw 0-255 pixels (N x 28 x 28 or N x 28 x 28 x 1).

The model as served is built only from Keras's own layers, so `keras.models.load_model("model.keras")` needs
no tfdock code; the model as trained differs from it only in how its batch norm trains (FusedBatchNorm).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfdock.config import TrainConfig
from tfdock.data import IMAGE_SIDE, NUM_CLASSES

# Not Keras's 0.99: over a short schedule the slow moving averages lag the fast-changing weights, and test
# accuracy (which uses them) trails training accuracy by 20-30 points early on.
BATCH_NORM_MOMENTUM = 0.9


class FusedBatchNorm(keras.layers.BatchNormalization):
    """Keras's BatchNormalization (its weights, moving averages and inference maths), trained through
    TensorFlow's fused kernel, one op forward and one back (oneDNN's on a CPU, cuDNN's on a GPU), where
    Keras 3 computes the moments, the normalisation and their gradients op by op: the default trains
    1.10-1.19x the images/s on an avx512 CPU, 1.07x held to avx2 kernels (docs/recipe.md). For N x H x W x C
    inputs (the conv blocks'); the same results as Keras's layer up to float rounding."""

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        if not (training and self.trainable):
            return super().call(inputs, training=training, mask=mask)
        # float32 statistics under mixed precision too, as Keras's layer computes them.
        x = tf.cast(inputs, tf.float32)
        normalised, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, self.gamma, self.beta, epsilon=self.epsilon, is_training=True
        )
        # The kernel returns the batch's unbiased variance; Keras averages the biased one. One factor, so
        # that a batch size known when tracing (folded to a constant) rounds as one known only at run time.
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
        variance = variance * ((count - 1) / count)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(normalised, self.compute_dtype)


def _block(x: keras.KerasTensor, filters: int, batch_norm: bool, serving: bool) -> keras.KerasTensor:
    """conv 3x3 -> max-pool 2 -> [BN] -> ReLU. Pooling first normalises and rectifies a quarter of the
    values that conv -> BN -> ReLU -> pool does, and batch norm is much of a CPU step's cost: 1.1-1.2x the
    images/s (docs/recipe.md). (With BN between them the max and the ReLU do not commute: the two orders
    are different models, of the same weights.)"""
    # With batch norm the conv bias is redundant (BN's beta takes its place).
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm)(x)
    x = keras.layers.MaxPooling2D()(x)
    if batch_norm:
        normalisation = keras.layers.BatchNormalization if serving else FusedBatchNorm
        x = normalisation(momentum=BATCH_NORM_MOMENTUM)(x)
    return keras.layers.ReLU()(x)


def _dropout(x: keras.KerasTensor, rate: float) -> keras.KerasTensor:
    # No layer at rate 0 (the default): Keras's Dropout(0) is an identity; the model summary should say so.
    return keras.layers.Dropout(rate)(x) if rate else x


def build(config: TrainConfig, serving: bool = False) -> keras.Model:
    """The model to train, or (`serving`) its twin of Keras's own layers, which takes its weights.

    Blocks of conv 3x3 -> max-pool 2 -> [BN] -> ReLU (`filters`: each block's; the first works at the full
    28x28), then [a hidden dense layer of `dense` units] and a dense softmax classifier, with [dropout] before
    each dense layer.

    The default 16 -> 32 -> 128 puts the width where the image is small: the 7x7 block is as cheap as the
    14x14 one with a quarter of its filters. The first block's 16 filters see one channel, so its full-size
    convolution is cheap; it computes its features at every position and keeps each 2x2 patch's maximum,
    where a stride-2 stem computed them at one position in four: +0.36 points over three seeds at 1.0-1.3x
    the images/s, by the CPU (docs/recipe.md)."""
    pixels = keras.Input(shape=(IMAGE_SIDE, IMAGE_SIDE), name="pixels")
    x = keras.layers.Reshape((IMAGE_SIDE, IMAGE_SIDE, 1))(pixels)
    x = keras.layers.Rescaling(1 / 255)(x)
    for filters in config.filters:
        x = _block(x, filters, config.batch_norm, serving)
    x = keras.layers.Flatten()(x)
    if config.dense:
        # A hidden layer before the classifier: cheap next to the convolutions, and it learns faster per
        # epoch than a linear read-out of the feature map.
        x = _dropout(x, config.dropout)
        x = keras.layers.Dense(config.dense, use_bias=not config.batch_norm)(x)
        if config.batch_norm:
            x = keras.layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM)(x)
        x = keras.layers.ReLU()(x)
    x = _dropout(x, config.dropout)
    logits = keras.layers.Dense(NUM_CLASSES)(x)
    # float32 softmax even under mixed_float16, for numerically sound probabilities.
    probabilities = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    return keras.Model(pixels, probabilities, name="tfdock_cnn")


def _columns_times(matrix: np.ndarray, name: str) -> keras.layers.Dense:
    """A frozen Dense layer that multiplies each image's rows by `matrix` (Dense acts on the last axis): with
    a matrix of ones and zeros, a rearrangement of its columns, exact."""
    layer = keras.layers.Dense(IMAGE_SIDE, use_bias=False, trainable=False, name=name)
    layer.build((None, IMAGE_SIDE, IMAGE_SIDE))
    layer.set_weights([matrix.astype("float32")])
    return layer


def for_inference(trained: keras.Model, config: TrainConfig) -> keras.Model:
    """The model as exported: the mean of `trained`'s answers over the views of the image it trained on
    (test-time augmentation), or `trained` itself when it trained on the images as they are. The views: the
    image and, if training mirrored, its mirror image (+0.3 points on Fashion-MNIST); if training shifted,
    each of those moved one pixel right, left, down and up besides (10 views with both: +0.05 to +0.26
    points more on each of six trained models, for 5x the inference; docs/recipe.md). Only what the model has
    trained on: before it has seen mirror images, the mirror mean costs points.

    Each view is a product with a frozen matrix of ones and zeros (rows through a transpose), so exact, and
    model.keras stays loadable with plain Keras: no custom layer, no Lambda."""
    if not (config.mirrors_at_inference or config.shifts_at_inference):
        return trained
    pixels = keras.Input(shape=(IMAGE_SIDE, IMAGE_SIDE), name="pixels")
    images = keras.layers.Reshape((IMAGE_SIDE, IMAGE_SIDE))(pixels)  # N x 28 x 28 x 1 works too
    views = [images]
    if config.mirrors_at_inference:
        mirror = _columns_times(np.eye(IMAGE_SIDE)[::-1], "mirror")
        views.append(mirror(images))
    if config.shifts_at_inference:
        right = _columns_times(np.eye(IMAGE_SIDE, k=1), "shift_right")  # column j takes column j - 1
        left = _columns_times(np.eye(IMAGE_SIDE, k=-1), "shift_left")
        transpose = keras.layers.Permute((2, 1))
        views = [
            moved
            for view in views
            for moved in (
                view,
                right(view),
                left(view),
                transpose(right(transpose(view))),  # down
                transpose(left(transpose(view))),  # up
            )
        ]
    probabilities = keras.layers.Average(dtype="float32", name="probabilities")(
        [trained(view) for view in views]
    )
    return keras.Model(pixels, probabilities, name=f"{trained.name}_averaged_over_{len(views)}_views")


def rng_states(model: keras.Model) -> list[keras.Variable]:
    """The state variables of the model's random layers (dropout), which a resumable checkpoint must hold.
    (Augmentation is the pipeline's, seeded by (seed, epoch, batch).)"""
    return [
        value.state
        for layer in model.layers
        for value in vars(layer).values()
        if isinstance(value, keras.random.SeedGenerator)
    ]

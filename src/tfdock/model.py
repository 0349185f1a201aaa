"""The CNN, with its preprocessing inside so that it takes raw 0-255 pixels (N x 28 x 28 or N x 28 x 28 x 1).

Built only from Keras's own layers, so `keras.models.load_model("model.keras")` needs no tfdock code.
"""

from __future__ import annotations

import keras

from tfdock.config import TrainConfig
from tfdock.data import IMAGE_SIDE, NUM_CLASSES


def _conv_bn_relu(
    x: keras.KerasTensor, filters: int, batch_norm: bool, strides: int = 1
) -> keras.KerasTensor:
    # With batch norm the conv bias is redundant (BN's beta takes its place).
    x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=not batch_norm)(x)
    if batch_norm:
        # Momentum 0.9, not Keras's 0.99: over a short schedule the slow moving averages lag the fast-changing
        # weights, and test accuracy (which uses them) trails training accuracy by 20-30 points early on.
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
    return keras.layers.ReLU()(x)


def build(config: TrainConfig) -> keras.Model:
    """[Random shifts of up to `translate` pixels, in training only], a stride-2 conv stem (`width` filters),
    then `depth` blocks of conv 3x3 -> [BN] -> ReLU -> max-pool 2, each doubling the filters, then dropout
    and a dense softmax classifier.

    The default width 24 (not 32) costs about half the multiply-adds per image: 24 -> 48 -> 96 filters at
    14x14 and 7x7 run ~1.6x the images/s of 32 -> 64 -> 128 on a 2-core CPU, which on that CPU buys more
    epochs in the same minutes than the wider model gains per epoch."""
    pixels = keras.Input(shape=(IMAGE_SIDE, IMAGE_SIDE), name="pixels")
    x = keras.layers.Reshape((IMAGE_SIDE, IMAGE_SIDE, 1))(pixels)
    if config.translate:
        # Training-time augmentation only (an identity at inference): whole-pixel shifts, zeros shifted in.
        # No flips: a mirrored digit is not the same digit.
        shift = config.translate / IMAGE_SIDE
        x = keras.layers.RandomTranslation(shift, shift, fill_mode="constant", interpolation="nearest")(x)
    x = keras.layers.Rescaling(1 / 255)(x)
    # Convolutions at the full 28x28 dominate the cost on a CPU; a strided stem does that work at 14x14.
    x = _conv_bn_relu(x, config.width, config.batch_norm, strides=2)
    for block in range(1, config.depth + 1):
        x = _conv_bn_relu(x, config.width * 2**block, config.batch_norm)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(config.dropout)(x)
    logits = keras.layers.Dense(NUM_CLASSES)(x)
    # float32 softmax even under mixed_float16, for numerically sound probabilities.
    probabilities = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    return keras.Model(pixels, probabilities, name="tfdock_cnn")


def rng_states(model: keras.Model) -> list[keras.Variable]:
    """The state variables of the model's random layers (dropout), which a resumable checkpoint must hold."""
    generators = [getattr(layer, "seed_generator", None) for layer in model.layers]
    return [generator.state for generator in generators if isinstance(generator, keras.random.SeedGenerator)]

"""tf.data input pipelines over in-memory uint8 arrays (kept apart from data.py so that downloading and
validating files never has to import TensorFlow).

Pixels stay uint8 here: normalisation lives inside the model so that its export takes raw pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tfdock.config import NO_AUGMENTATION, Augmentation

# Batches ready ahead of the training step, and the map's threads: fixed, not tf.data's AUTOTUNE. With
# autotuning on, creating a new epoch's iterator waited idle (both cores, every thread in a futex) for 6-19 s
# from about the 5th epoch on (TF 2.21, 2-core machine: 40 s epochs among 20 s ones, a quarter of a 15-epoch
# run); with it off, none did. The map (flips, shifts) is a few cheap ops on uint8 batches: one thread keeps
# up with the training step.
PREFETCH_BATCHES = 2


def _prefetched(dataset: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(PREFETCH_BATCHES).with_options(options)


def epoch_seed(seed: int, epoch: int) -> int:
    """A shuffle seed that depends only on (seed, epoch), so a resumed run sees the same order."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def training_batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    augmentation: Augmentation = NO_AUGMENTATION,
) -> Callable[[int], tf.data.Dataset]:
    """Returns epoch -> that epoch's shuffled batches. Full batches only: steps per epoch stay fixed.

    The random flips and shifts, like the order, are a function of (seed, epoch, batch), so a resumed run
    sees the same images.
    """
    examples = tf.data.Dataset.from_tensor_slices((images, labels))  # already in memory: no .cache()

    def for_epoch(epoch: int) -> tf.data.Dataset:
        seed_of_epoch = epoch_seed(seed, epoch)
        batches = examples.shuffle(len(images), seed=seed_of_epoch, reshuffle_each_iteration=False).batch(
            batch_size, drop_remainder=True
        )
        flips = augmentation.flips(epoch)
        shift_pixels = augmentation.shift_pixels if augmentation.shifts(epoch) else 0
        if flips or shift_pixels:
            batches = batches.enumerate().map(_augment(seed_of_epoch, flips, shift_pixels))
        return _prefetched(batches)

    return for_epoch


def _augment(
    seed_of_epoch: int, flips: bool, shift_pixels: int
) -> Callable[..., tuple[tf.Tensor, tf.Tensor]]:
    def augment(index: tf.Tensor, batch: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        images, labels = batch
        seed = tf.stack([tf.constant(seed_of_epoch % 2**31, tf.int64), index])
        if flips:
            mirrored = tf.random.stateless_uniform(tf.shape(labels), seed=seed) < 0.5
            images = tf.where(mirrored[:, None, None], tf.reverse(images, axis=[2]), images)
        if shift_pixels:
            images = _shift(images, shift_pixels, tf.random.experimental.stateless_fold_in(seed, 1))
        return images, labels

    return augment


def _shift(images: tf.Tensor, pixels: int, seed: tf.Tensor) -> tf.Tensor:
    """Each image of the N x H x W batch moved by its own whole-pixel offsets, zeros shifted in. An offset
    is a uniform draw from [-pixels, pixels], rounded (as Keras's RandomTranslation with nearest
    interpolation draws them): for 1 pixel, no shift along an axis with probability 1/2."""
    size = tf.shape(images)[1]
    draws = tf.random.stateless_uniform([tf.shape(images)[0], 2], seed, -pixels, pixels)
    offsets = tf.cast(tf.round(draws), tf.int32)
    padded = tf.pad(images, [[0, 0], [pixels, pixels], [pixels, pixels]])
    # Output pixel (r, c) reads padded (r + pixels - dy, c + pixels - dx): the input moved by (dy, dx).
    rows = tf.range(size)[None, :] + pixels - offsets[:, :1]
    columns = tf.range(size)[None, :] + pixels - offsets[:, 1:]
    images = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(images, columns, axis=2, batch_dims=1)


def evaluation_batches(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    return _prefetched(tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size))

"""tf.data input pipelines over in-memory uint8 arrays (kept apart from data.py so that downloading and
validating files never has to import TensorFlow).

Pixels stay uint8 here: normalisation lives inside the model so that its export takes raw pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf


def epoch_seed(seed: int, epoch: int) -> int:
    """A shuffle seed that depends only on (seed, epoch), so a resumed run sees the same order."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def training_batches(
    images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, flip_from_epoch: int | None = None
) -> Callable[[int], tf.data.Dataset]:
    """Returns epoch -> that epoch's shuffled batches. Full batches only: steps per epoch stay fixed.

    From epoch `flip_from_epoch` (0-based) on, each image is mirrored left-right with probability 1/2. The
    flips, like the order, are a function of (seed, epoch, batch), so a resumed run sees the same images.
    """
    examples = tf.data.Dataset.from_tensor_slices((images, labels))  # already in memory: no .cache()

    def for_epoch(epoch: int) -> tf.data.Dataset:
        seed_of_epoch = epoch_seed(seed, epoch)
        batches = examples.shuffle(len(images), seed=seed_of_epoch, reshuffle_each_iteration=False).batch(
            batch_size, drop_remainder=True
        )
        if flip_from_epoch is not None and epoch >= flip_from_epoch:
            batches = batches.enumerate().map(
                _mirror_at_random(seed_of_epoch), num_parallel_calls=tf.data.AUTOTUNE
            )
        return batches.prefetch(tf.data.AUTOTUNE)

    return for_epoch


def _mirror_at_random(seed_of_epoch: int) -> Callable[..., tuple[tf.Tensor, tf.Tensor]]:
    def mirror(index: tf.Tensor, batch: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        images, labels = batch
        seed = tf.stack([tf.constant(seed_of_epoch % 2**31, tf.int64), index])
        flips = tf.random.stateless_uniform(tf.shape(labels), seed=seed) < 0.5
        return tf.where(flips[:, None, None], tf.reverse(images, axis=[2]), images), labels

    return mirror


def evaluation_batches(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size).prefetch(tf.data.AUTOTUNE)

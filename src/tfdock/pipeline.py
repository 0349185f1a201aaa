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
    images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int
) -> Callable[[int], tf.data.Dataset]:
    """Returns epoch -> that epoch's shuffled batches. Full batches only: steps per epoch stay fixed."""
    examples = tf.data.Dataset.from_tensor_slices((images, labels))  # already in memory: no .cache()

    def for_epoch(epoch: int) -> tf.data.Dataset:
        return (
            examples.shuffle(len(images), seed=epoch_seed(seed, epoch), reshuffle_each_iteration=False)
            .batch(batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE)
        )

    return for_epoch


def evaluation_batches(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size).prefetch(tf.data.AUTOTUNE)

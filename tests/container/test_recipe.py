"""The default recipe: a short warm-up in epochs, shifts in training only, smoothing in the loss only."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdock import model as cnn
from tfdock import runtime, train
from tfdock.config import TrainConfig


def test_onecycle_warms_up_for_a_fixed_fraction_of_an_epoch_whatever_the_run_length() -> None:
    steps_per_epoch = 100
    for epochs in (10, 30):
        schedule = train.learning_rate_schedule(TrainConfig(epochs=epochs), 0.002, steps_per_epoch)
        assert isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
        warmup_steps = round(steps_per_epoch * train.ONECYCLE_WARMUP_EPOCHS)
        assert float(schedule(0)) == pytest.approx(0.002 / train.ONECYCLE_START_DIVISOR)
        assert float(schedule(warmup_steps)) == pytest.approx(0.002)
        assert float(schedule(warmup_steps // 2)) < 0.002
        assert float(schedule(steps_per_epoch * epochs)) == pytest.approx(0.0, abs=1e-9)


def test_a_very_short_run_still_warms_up_for_at_most_a_quarter_of_it() -> None:
    schedule = train.learning_rate_schedule(TrainConfig(epochs=1), 0.002, 8)
    assert float(schedule(2)) == pytest.approx(0.002)  # int(8 * 0.25) = 2 warm-up steps, not round(2.4)


def test_translation_is_an_identity_at_inference_and_shifts_in_training() -> None:
    model = cnn.build(TrainConfig(translate=2))
    [translation] = [layer for layer in model.layers if isinstance(layer, keras.layers.RandomTranslation)]
    images = np.random.default_rng(0).integers(0, 256, (16, 28, 28, 1)).astype("float32")
    np.testing.assert_array_equal(translation(images, training=False), images)
    assert not np.array_equal(translation(images, training=True), images)
    unshifted = cnn.build(TrainConfig(translate=0))
    assert not [layer for layer in unshifted.layers if isinstance(layer, keras.layers.RandomTranslation)]


def test_label_smoothing_changes_the_training_loss_only() -> None:
    env = runtime.setup(TrainConfig())
    model = cnn.build(TrainConfig())
    trainer = train.Trainer(model, keras.optimizers.Adam(), env, label_smoothing=0.1)
    labels = tf.constant([0, 3, 9])
    probabilities = tf.constant([[0.91] + [0.01] * 9] * 3)
    plain = keras.losses.SparseCategoricalCrossentropy(reduction="sum")(labels, probabilities)
    evaluated, correct, count = trainer._sums(labels, probabilities)
    trained, _, _ = trainer._sums(labels, probabilities, training=True)
    assert float(evaluated) == pytest.approx(float(plain), rel=1e-5)
    assert float(trained) != pytest.approx(float(evaluated), rel=1e-3)
    assert float(correct) == 1 and float(count) == 3

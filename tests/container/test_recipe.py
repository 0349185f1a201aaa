"""The default recipe: learning-rate schedules, augmentation, the views the export averages over, smoothing
in the loss only."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdock import model as cnn
from tfdock import optimizer, runtime
from tfdock.config import TrainConfig
from tfdock.trainer import Trainer


def test_onecycle_warms_up_for_a_fixed_fraction_of_an_epoch_whatever_the_run_length() -> None:
    steps_per_epoch = 100
    for epochs in (10, 30):
        schedule = optimizer.learning_rate_schedule(
            TrainConfig(epochs=epochs, lr_schedule="onecycle"), 0.002, steps_per_epoch
        )
        assert isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
        warmup_steps = round(steps_per_epoch * optimizer.ONECYCLE_WARMUP_EPOCHS)
        assert float(schedule(0)) == pytest.approx(0.002 / optimizer.ONECYCLE_START_DIVISOR)
        assert float(schedule(warmup_steps)) == pytest.approx(0.002)
        assert float(schedule(warmup_steps // 2)) < 0.002
        assert float(schedule(steps_per_epoch * epochs)) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("epochs", [1, 2, 8, 15, 20])
def test_restarts_end_their_last_cycle_with_the_run(epochs: int) -> None:
    steps_per_epoch = 20
    schedule = optimizer.learning_rate_schedule(
        TrainConfig(epochs=epochs, lr_schedule="restarts"), 0.004, steps_per_epoch
    )
    total = steps_per_epoch * epochs
    assert float(schedule(0)) == pytest.approx(0.004)
    assert float(schedule(total - 1)) < 0.004 * 0.01  # the run ends annealed, not mid-cycle
    rates = [float(schedule(step)) for step in range(total)]
    restarts = [step for step in range(1, total) if rates[step] > rates[step - 1]]
    cycle_ends = [*restarts, total]
    # Cycles double in length, so every restart comes after a rate near zero.
    assert all(rates[step - 1] < 0.004 * 0.01 for step in restarts)
    lengths = [end - start for start, end in zip([0, *restarts], cycle_ends, strict=True)]
    # (the first cycle is rounded up to whole steps, so the last one may be cut short by a few)
    slack = 2 ** len(lengths)
    assert all(
        later == pytest.approx(2 * earlier, abs=slack) for earlier, later in itertools.pairwise(lengths)
    )


def test_fifteen_epochs_of_restarts_end_a_cycle_after_the_first_epoch() -> None:
    schedule = optimizer.learning_rate_schedule(TrainConfig(epochs=15, lr_schedule="restarts"), 0.004, 100)
    assert float(schedule(99)) < 0.004 * 0.01
    assert float(schedule(100)) == pytest.approx(0.004)


def test_each_block_pools_before_it_normalises_and_the_first_works_at_full_size() -> None:
    model = cnn.build(TrainConfig(filters=(16, 32, 128)))
    block_layers = (keras.layers.Conv2D, keras.layers.MaxPooling2D, cnn.FusedBatchNorm)
    kinds = [type(layer) for layer in model.layers if isinstance(layer, (*block_layers, keras.layers.ReLU))]
    assert kinds[:12] == [*block_layers, keras.layers.ReLU] * 3
    first = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert first.strides == (1, 1) and tuple(first.output.shape[1:]) == (28, 28, 16)
    flatten = next(layer for layer in model.layers if isinstance(layer, keras.layers.Flatten))
    assert tuple(flatten.output.shape[1:]) == (3 * 3 * 128,)  # 28 -> 14 -> 7 -> 3


def test_the_served_twin_is_keras_layers_only_and_takes_the_trained_weights() -> None:
    config = TrainConfig(filters=(4, 8), dense=16)
    trained, served = cnn.build(config), cnn.build(config, serving=True)
    assert all(type(layer).__module__.startswith("keras.") for layer in served.layers)
    assert [weight.shape for weight in served.weights] == [weight.shape for weight in trained.weights]


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fused_batch_norm_trains_as_keras_layer_does(policy: str, seed: int) -> None:
    """A block's conv -> max-pool -> batch norm in a compiled function, as the train step runs it (oneDNN's
    kernels and layouts): the output, the gradients of the conv kernel, gamma and beta, and the moving
    averages after the step. (No ReLU after it: where its input is within rounding of zero, the two layers'
    roundings land on either side and the ReLU passes one gradient and stops the other, which says nothing
    about the kernel.)"""
    inputs = tf.random.stateless_normal([32, 14, 14, 8], seed=[seed, 1]) * 3.0 + 1.0
    kernel = tf.random.stateless_normal([3, 3, 8, 16], seed=[seed, 2]) * 0.2
    upstream = tf.random.stateless_normal([32, 7, 7, 16], seed=[seed, 3])
    results = []
    keras.mixed_precision.set_global_policy(policy)
    try:
        for layer in (keras.layers.BatchNormalization(momentum=0.9), cnn.FusedBatchNorm(momentum=0.9)):
            layer.build((None, 7, 7, 16))
            layer.gamma.assign(tf.linspace(0.5, 2.0, 16))
            layer.beta.assign(tf.linspace(-1.0, 1.0, 16))
            weights = tf.Variable(tf.cast(kernel, layer.compute_dtype))

            @tf.function
            def step(layer: keras.layers.Layer = layer, weights: tf.Variable = weights) -> list[tf.Tensor]:
                with tf.GradientTape() as tape:
                    convolved = tf.nn.conv2d(tf.cast(inputs, layer.compute_dtype), weights, 1, "SAME")
                    outputs = layer(tf.nn.max_pool2d(convolved, 2, 2, "VALID"), training=True)
                    loss = tf.reduce_sum(tf.cast(outputs, tf.float32) * upstream)
                return [outputs, *tape.gradient(loss, [weights, layer.gamma, layer.beta])]

            results.append([*step(), layer.moving_mean, layer.moving_variance])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    tolerance = 1e-4 if policy == "float32" else 2e-2
    for keras_value, fused_value in zip(*results, strict=True):
        expected, actual = (np.asarray(tf.cast(value, tf.float32)) for value in (keras_value, fused_value))
        np.testing.assert_allclose(actual, expected, atol=tolerance * np.abs(expected).max(), rtol=0)


def test_a_very_short_onecycle_run_still_warms_up_for_at_most_a_quarter_of_it() -> None:
    schedule = optimizer.learning_rate_schedule(TrainConfig(epochs=1, lr_schedule="onecycle"), 0.002, 8)
    assert float(schedule(2)) == pytest.approx(0.002)  # int(8 * 0.25) = 2 warm-up steps, not round(2.4)


def test_shifts_are_the_pipelines_from_their_epoch_and_leave_the_model_alone() -> None:
    config = TrainConfig(translate=2, translate_after=4)
    assert config.augmentation.shift_pixels == 2 and config.augmentation.shift_from_epoch == 4
    assert not config.augmentation.shifts(3) and config.augmentation.shifts(4)
    assert not TrainConfig(translate=0).augmentation.shifts(10)
    layers = {type(layer) for layer in cnn.build(config).layers}
    assert layers == {type(layer) for layer in cnn.build(TrainConfig(translate=0)).layers}


def test_flips_are_on_for_clothes_and_off_for_digits_unless_asked() -> None:
    assert TrainConfig(dataset="fashion-mnist").flips_images
    assert not TrainConfig(dataset="mnist").flips_images
    assert TrainConfig(dataset="mnist", flip="on").flips_images
    assert not TrainConfig(dataset="fashion-mnist", flip="off").flips_images
    assert TrainConfig(dataset="fashion-mnist").augmentation.flip_from_epoch == 3
    assert TrainConfig(dataset="mnist").augmentation.flip_from_epoch is None


def test_every_random_layer_has_its_state_in_the_checkpoint() -> None:
    model = cnn.build(TrainConfig(translate=1, dense=128, dropout=0.2))
    random_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert len(random_layers) == 2
    assert len(cnn.rng_states(model)) == len(random_layers)


def test_dense_adds_one_hidden_layer_before_the_classifier() -> None:
    def dense_units(config: TrainConfig) -> list[int]:
        return [layer.units for layer in cnn.build(config).layers if isinstance(layer, keras.layers.Dense)]

    assert dense_units(TrainConfig(dense=128)) == [128, 10]
    assert dense_units(TrainConfig(dense=0)) == [10]


def test_label_smoothing_changes_the_training_loss_only() -> None:
    env = runtime.setup(TrainConfig())
    model = cnn.build(TrainConfig())
    trainer = Trainer(model, keras.optimizers.Adam(), env, label_smoothing=0.1)
    labels = tf.constant([0, 3, 9])
    probabilities = tf.constant([[0.91] + [0.01] * 9] * 3)
    plain = keras.losses.SparseCategoricalCrossentropy(reduction="sum")(labels, probabilities)
    evaluated, correct, count = trainer._sums(labels, probabilities)
    trained, _, _ = trainer._sums(labels, probabilities, training=True)
    assert float(evaluated) == pytest.approx(float(plain), rel=1e-5)
    assert float(trained) != pytest.approx(float(evaluated), rel=1e-3)
    assert float(correct) == 1 and float(count) == 3


def _moved(images: np.ndarray, down: int, right: int) -> np.ndarray:
    """The images moved `down` rows and `right` columns (either may be negative), zeros shifted in."""
    moved = np.roll(images, (down, right), axis=(1, 2))
    for axis, pixels in ((1, down), (2, right)):
        if pixels:
            wrapped = [slice(None)] * moved.ndim
            wrapped[axis] = slice(0, pixels) if pixels > 0 else slice(pixels, None)
            moved[tuple(wrapped)] = 0
    return moved


def test_the_export_answers_with_the_mean_over_the_views_it_trained_on() -> None:
    trained = cnn.build(TrainConfig())
    pixels = np.random.default_rng(0).integers(0, 256, (8, 28, 28)).astype("float32")

    def mean_over(views: list[np.ndarray]) -> np.ndarray:
        return np.mean([trained(view, training=False) for view in views], axis=0)

    mirrored_and_shifted = cnn.for_inference(trained, TrainConfig())  # the default trains on both
    images = [pixels, pixels[:, :, ::-1]]
    views = [_moved(image, *move) for image in images for move in [(0, 0), (0, 1), (0, -1), (1, 0), (-1, 0)]]
    np.testing.assert_allclose(
        mirrored_and_shifted(pixels, training=False), mean_over(views), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(
        mirrored_and_shifted(pixels[..., np.newaxis], training=False), mean_over(views), rtol=1e-6, atol=1e-7
    )
    for view in ("mirror", "shift_right", "shift_left"):  # training never changes the views
        assert not mirrored_and_shifted.get_layer(view).trainable_weights
    mirrored = cnn.for_inference(trained, TrainConfig(translate=0))
    np.testing.assert_allclose(mirrored(pixels, training=False), mean_over(images), rtol=1e-6, atol=1e-7)
    shifted = cnn.for_inference(trained, TrainConfig(flip="off"))
    np.testing.assert_allclose(shifted(pixels, training=False), mean_over(views[:5]), rtol=1e-6, atol=1e-7)
    assert cnn.for_inference(trained, TrainConfig(flip="off", translate=0)) is trained
    not_yet_augmented = TrainConfig(epochs=3, flip_after=3, translate_after=3)
    assert cnn.for_inference(trained, not_yet_augmented) is trained

"""The tf.data pipeline, the model's in-graph preprocessing and output, and config validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tfdock import data, pipeline
from tfdock import model as cnn
from tfdock.config import NO_AUGMENTATION, Augmentation, TrainConfig
from tfdock.errors import ConfigError


def _epoch_labels(stream, epoch: int) -> np.ndarray:
    return np.concatenate([labels.numpy() for _, labels in stream(epoch)])


def test_training_batches_are_full_uint8_batches_covering_each_example_once(
    small_fashion: data.Splits,
) -> None:
    stream = pipeline.training_batches(small_fashion.train_images, small_fashion.train_labels, 64, seed=3)
    batches = list(stream(0))
    assert len(batches) == 600 // 64
    images, labels = batches[0]
    assert images.shape == (64, 28, 28) and images.dtype.name == "uint8" and labels.dtype.name == "uint8"
    seen = np.concatenate([image.numpy().reshape(len(image), -1) for image, _ in batches])
    assert len({row.tobytes() for row in seen}) == len(seen)  # no example twice within an epoch


def test_shuffle_order_depends_only_on_seed_and_epoch(small_fashion: data.Splits) -> None:
    def stream(seed: int):
        return pipeline.training_batches(small_fashion.train_images, small_fashion.train_labels, 100, seed)

    np.testing.assert_array_equal(_epoch_labels(stream(1), 4), _epoch_labels(stream(1), 4))  # a resumed run
    assert not np.array_equal(
        _epoch_labels(stream(1), 4), _epoch_labels(stream(1), 5)
    )  # reshuffled each epoch
    assert not np.array_equal(_epoch_labels(stream(1), 4), _epoch_labels(stream(2), 4))


def _epoch(
    splits: data.Splits, number: int, augmentation: Augmentation = NO_AUGMENTATION
) -> tuple[np.ndarray, np.ndarray]:
    stream = pipeline.training_batches(splits.train_images, splits.train_labels, 100, 1, augmentation)
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in stream(number)], strict=True)
    return np.concatenate(images), np.concatenate(labels)


def test_flips_start_at_their_epoch_mirror_about_half_and_repeat_exactly(small_fashion: data.Splits) -> None:
    def epoch(number: int, flip_from_epoch: int | None) -> tuple[np.ndarray, np.ndarray]:
        return _epoch(small_fashion, number, Augmentation(flip_from_epoch=flip_from_epoch))

    np.testing.assert_array_equal(epoch(2, 3)[0], epoch(2, None)[0])  # before its epoch: untouched
    (images, labels), (plain, plain_labels) = epoch(3, 3), epoch(3, None)
    mirrored = np.array([not np.array_equal(a, b) for a, b in zip(images, plain, strict=True)])
    assert 0.35 < mirrored.mean() < 0.65
    np.testing.assert_array_equal(images[mirrored], plain[mirrored][:, :, ::-1])  # left-right, nothing else
    np.testing.assert_array_equal(images[~mirrored], plain[~mirrored])
    np.testing.assert_array_equal(labels, plain_labels)
    np.testing.assert_array_equal(epoch(3, 3)[0], images)  # a resumed run sees the same flips


def _moved(image: np.ndarray, down: int, right: int) -> np.ndarray:
    padded = np.pad(image, 2)
    return padded[2 - down : 30 - down, 2 - right : 30 - right]


def test_shifts_start_at_their_epoch_move_whole_images_within_range_and_repeat_exactly(
    small_fashion: data.Splits,
) -> None:
    shifting = Augmentation(shift_pixels=2, shift_from_epoch=1)
    plain, labels = _epoch(small_fashion, 1)
    np.testing.assert_array_equal(_epoch(small_fashion, 0, shifting)[0], _epoch(small_fashion, 0)[0])
    images, shifted_labels = _epoch(small_fashion, 1, shifting)
    np.testing.assert_array_equal(shifted_labels, labels)
    offsets = []
    for image, original in zip(images, plain, strict=True):
        # Exactly one (down, right) in range reproduces each image: a whole-image move, zeros shifted in.
        [offset] = [
            (down, right)
            for down in range(-2, 3)
            for right in range(-2, 3)
            if np.array_equal(image, _moved(original, down, right))
        ]
        offsets.append(offset)
    # Rounded uniform draws from [-2, 2]: 0 and +-1 each a quarter of the time, +-2 an eighth.
    for axis in np.array(offsets).T:
        assert set(axis) == {-2, -1, 0, 1, 2}
        assert 0.15 < np.mean(axis == 0) < 0.35 and 0.05 < np.mean(axis == 2) < 0.2
    np.testing.assert_array_equal(_epoch(small_fashion, 1, shifting)[0], images)  # the same after a resume
    both = _epoch(small_fashion, 1, Augmentation(flip_from_epoch=1, shift_pixels=2, shift_from_epoch=1))
    assert not np.array_equal(both[0], images)  # flips and shifts compose


def test_pipelines_prefetch_a_fixed_few_batches_without_tf_data_autotuning(
    small_fashion: data.Splits,
) -> None:
    # Autotuning made a new epoch's iterator wait idle for up to 19 s (pipeline.PREFETCH_BATCHES).
    augmenting = Augmentation(flip_from_epoch=0, shift_pixels=1)
    training = pipeline.training_batches(
        small_fashion.train_images, small_fashion.train_labels, 64, 0, augmenting
    )
    evaluation = pipeline.evaluation_batches(small_fashion.test_images, small_fashion.test_labels, 64)
    for dataset in (training(0), evaluation):
        assert dataset.options().autotune.enabled is False


def test_evaluation_batches_keep_every_example_in_order(small_fashion: data.Splits) -> None:
    batches = pipeline.evaluation_batches(small_fashion.test_images, small_fashion.test_labels, 64)
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in batches]), small_fashion.test_labels)


def test_model_takes_raw_pixels_in_either_shape_and_returns_probabilities(small_fashion: data.Splits) -> None:
    model = cnn.build(TrainConfig())
    pixels = small_fashion.test_images[:8]
    probabilities = model(pixels.astype("float32"), training=False).numpy()
    assert probabilities.shape == (8, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    with_channel = model(pixels[..., np.newaxis].astype("float32"), training=False).numpy()
    np.testing.assert_allclose(with_channel, probabilities, rtol=1e-6)


def test_normalisation_is_inside_the_model() -> None:
    model = cnn.build(TrainConfig())
    rescaling = [layer for layer in model.layers if layer.__class__.__name__ == "Rescaling"]
    assert len(rescaling) == 1 and rescaling[0].scale == pytest.approx(1 / 255)


@pytest.mark.parametrize("filters", [(8,), (8, 4), (8, 16, 32, 64)])
def test_model_filters_are_configurable(filters: tuple[int, ...]) -> None:
    model = cnn.build(TrainConfig(filters=filters, batch_norm=False))
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert tuple(conv.filters for conv in convs) == filters
    assert not [layer for layer in model.layers if "BatchNormalization" in layer.__class__.__name__]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, "--epochs must be >= 1"),
        ("batch_size", -4, "--batch-size must be >= 1"),
        ("learning_rate", 0.0, "--learning-rate must be > 0"),
        ("validation_split", 1.0, "--validation-split must be in [0, 1)"),
        ("filters", (8, 8, 8, 8, 8), "--filters takes 1 to 4 counts"),
        ("filters", (16, 0), "--filters takes 1 to 4 counts >= 1 (got 16,0)"),
        ("profile", (5, 2), "--profile must be START:STOP"),
        ("lr_schedule", "step", "--lr-schedule must be one of"),
        ("jit_compile", True, "--jit-compile cannot be deterministic"),
    ],
)
def test_bad_config_values_are_config_errors(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**{field: value})  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_a_saved_config_reads_back_as_the_same_run(tmp_path: Path) -> None:
    config = TrainConfig(filters=(8, 16), translate=2, profile=(3, 5))
    (tmp_path / "config.json").write_text(config.to_json())
    assert TrainConfig.from_json_file(tmp_path / "config.json") == config


def test_a_run_saved_by_an_earlier_recipe_is_refused_not_resumed_on_another_recipe(tmp_path: Path) -> None:
    # Its checkpoint has the same variables as today's model of the same options: it would load, and train on
    # as a different model (version 1, saved without a version) or with another optimizer (version 2).
    for earlier in (None, 2):
        saved = json.loads(TrainConfig().to_json())
        del saved["recipe_version"]
        if earlier:
            saved["recipe_version"] = earlier
        (tmp_path / "config.json").write_text(json.dumps(saved))
        with pytest.raises(ConfigError) as caught:
            TrainConfig.from_json_file(tmp_path / "config.json")
        assert str(caught.value) == (
            f"{tmp_path}: trained by an earlier tfdock, whose recipe differs for the same options: "
            "it cannot resume here — finish it with the tfdock it started with, or train a new run"
        )

"""The exports reload without tfdock, take raw N x 28 x 28 pixels and agree with each other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdock import data

pytestmark = pytest.mark.slow


def test_keras_and_saved_model_exports_agree_on_raw_uint8_pixels(
    trained_run: Path, fashion: data.Splits
) -> None:
    pixels = fashion.test_images[:500]  # uint8, N x 28 x 28, straight from the IDX file
    from_keras = keras.models.load_model(trained_run / "model.keras").predict(pixels, verbose=0)
    served = tf.saved_model.load(str(trained_run / "saved_model"))
    from_uint8 = served.serve_uint8(tf.constant(pixels)).numpy()
    from_float = served.serve(tf.constant(pixels[..., np.newaxis], tf.float32)).numpy()  # N x 28 x 28 x 1
    np.testing.assert_allclose(from_uint8, from_keras, atol=1e-6)
    np.testing.assert_allclose(from_float, from_keras, atol=1e-6)
    np.testing.assert_allclose(from_keras.sum(axis=1), 1.0, rtol=1e-5)  # softmax probabilities
    assert (from_keras.argmax(axis=1) == fashion.test_labels[:500]).mean() >= 0.7


def test_metrics_json_scores_the_model_as_exported(trained_run: Path, fashion: data.Splits) -> None:
    metrics = json.loads((trained_run / "metrics.json").read_text())
    count = metrics["config"]["limit_test"]
    served = tf.saved_model.load(str(trained_run / "saved_model"))
    probabilities = served.serve_uint8(tf.constant(fashion.test_images[:count])).numpy()
    accuracy = (probabilities.argmax(axis=1) == fashion.test_labels[:count]).mean()
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    model = keras.models.load_model(trained_run / "model.keras")
    # Trained on mirror images and shifted ones: the export averages over the mirror and the shifted views.
    assert model.get_layer("mirror") and model.get_layer("shift_right")


def test_model_keras_loads_with_plain_keras_and_no_tfdock(trained_run: Path) -> None:
    script = (
        "import sys, keras, numpy as np;"
        "m = keras.models.load_model(sys.argv[1]);"
        "p = m.predict(np.zeros((2, 28, 28), np.uint8), verbose=0);"
        "assert 'tfdock' not in sys.modules; print(p.shape, round(float(p.sum()), 3))"
    )
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(trained_run / "model.keras")],
        capture_output=True,
        text=True,
        timeout=600,  # bounds a hang, on a loaded machine too
        check=False,
        cwd="/",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(2, 10) 2.0"


def test_metrics_json_records_the_environment(trained_run: Path) -> None:
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["tensorflow_version"] == tf.__version__
    assert metrics["strategy"] == "default" and metrics["devices"]
    assert metrics["config"]["dataset"] == "fashion-mnist"

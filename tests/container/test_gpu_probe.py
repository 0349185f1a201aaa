"""The doctor's TensorFlow probe, run here as the doctor runs it in the runtime image: on a machine with no
GPU (this one) it reports none, with the build it found and TensorFlow's own reason on stderr."""

from __future__ import annotations

import os
import subprocess
import sys

import tensorflow as tf

from tfdock_host.gpu_compat import TENSORFLOW_PROBE, ProbeReport, tensorflow_reason


def test_the_probe_reports_no_gpu_the_build_and_why_on_a_machine_without_one() -> None:
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-c", TENSORFLOW_PROBE],
        capture_output=True,
        text=True,
        env={**environment, "CUDA_VISIBLE_DEVICES": ""},
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = ProbeReport.parse(result.stdout)
    assert report is not None, result.stdout
    assert report.gpus == ()
    assert report.tensorflow == tf.__version__
    build = tf.sysconfig.get_build_info()
    assert report.cuda == build.get("cuda_version")
    assert list(report.targets) == list(build.get("cuda_compute_capabilities") or [])
    assert report.profiling is None or report.profiling in ("open", "admin-only")
    # A CPU build looking for GPUs: at most start-up chatter on stderr (oneDNN's info line, on CPUs where
    # TensorFlow turns oneDNN on), no reason.
    assert tensorflow_reason(result.stderr) is None

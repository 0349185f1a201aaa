"""Which GPUs TensorFlow's CUDA build has kernels for: the doctor's decision over a table of real GPUs."""

from __future__ import annotations

import json

import pytest

from tfdock_host import gpu_compat
from tfdock_host.gpu_compat import ProbeReport, kernel_support
from tfdock_host.settings import ROOT

# TensorFlow 2.21's GPU wheel (the lock's), as its build lists them: compute_90 is sm_90 code and its PTX.
TF_2_21_TARGETS = gpu_compat.CUDA_WHEEL_TARGETS["2.21"]

REAL_GPUS = [
    # (GPU, compute capability, verdict, what the detail says)
    ("K40", (3, 5), "FAIL", "older than its oldest target 6.0"),
    ("K80", (3, 7), "FAIL", "older than its oldest target 6.0"),
    ("M60", (5, 2), "FAIL", "older than its oldest target 6.0"),
    ("P100", (6, 0), "ok", "sm_60 kernels"),
    ("V100", (7, 0), "ok", "sm_70 kernels"),
    ("T4", (7, 5), "ok", "sm_70 kernels"),  # same major: 7.0 code runs on 7.5
    ("A100", (8, 0), "ok", "sm_80 kernels"),
    ("RTX 3090", (8, 6), "ok", "sm_80 kernels"),
    ("RTX 4090", (8, 9), "ok", "sm_89 kernels"),
    ("H100", (9, 0), "ok", "sm_90 kernels"),
    ("B200", (10, 0), "FAIL", "Blackwell or later"),
    ("RTX 5090", (12, 0), "FAIL", "Blackwell or later"),
]


@pytest.mark.parametrize(
    ("gpu", "capability", "level", "detail"), REAL_GPUS, ids=[row[0] for row in REAL_GPUS]
)
def test_tensorflow_2_21_kernels_by_gpu(gpu, capability, level, detail):
    support = kernel_support(capability, TF_2_21_TARGETS)
    assert support.level == level, support
    assert detail in support.detail
    assert support.level == "ok" or support.fix


def test_blackwell_has_no_installable_kernels_and_says_what_to_do_instead():
    support = kernel_support((12, 0), TF_2_21_TARGETS)
    assert support.fix == gpu_compat.BLACKWELL_ADVICE
    assert "sm_100/sm_120" in support.fix and "--gpus none" in support.fix
    assert "compute_90 PTX" in support.detail


def test_kepler_is_told_no_current_tensorflow_has_kernels_for_it_and_which_last_did():
    for capability in ((3, 5), (3, 7)):
        assert kernel_support(capability, TF_2_21_TARGETS).fix == gpu_compat.KEPLER_ADVICE
    assert "2.14 (CUDA 11.8, sm_35 code" in gpu_compat.KEPLER_ADVICE
    assert "older TensorFlow built for it" in kernel_support((5, 2), TF_2_21_TARGETS).fix


# (driver, CUDA release of the image's wheels, verdict): minor version compatibility's minimums, and around.
DRIVERS = [
    ("575.57.08", "12.9", "ok"),
    ("550.54.15", "12.9", "ok"),
    ("535.104.05", "12.9", "ok"),
    ("525.60.13", "12.9", "ok"),
    ("525.60.12", "12.9", "FAIL"),
    ("520.61.05", "12.9", "FAIL"),
    ("470.256.02", "12.9", "FAIL"),  # R470: the last branch for Kepler
    ("470.256.02", "11.8", "ok"),
    ("450.80.02", "11.2", "ok"),
    ("450.51.06", "11.0", "FAIL"),
    ("580.65.06", "13.0", "warn"),  # no minimum known here for CUDA 13
    ("not a version", "12.9", "warn"),
]


@pytest.mark.parametrize(("driver", "cuda", "level"), DRIVERS, ids=[f"{d}-cuda{c}" for d, c, _ in DRIVERS])
def test_driver_versions_against_the_cuda_release(driver, cuda, level):
    support = gpu_compat.driver_support(driver, cuda)
    assert support.level == level, support
    assert level != "FAIL" or "upgrade the host's NVIDIA driver" in support.fix


def test_the_cuda_release_comes_from_the_gpu_locks_runtime_wheel():
    lock = (ROOT / "requirements" / "runtime-gpu.txt").read_text()
    assert gpu_compat.lock_cuda(lock) == "12.9"
    assert gpu_compat.lock_cuda("tensorflow==2.21.0\n") is None


def test_nvidia_smis_table_rows_parse_and_messages_do_not():
    table = "0, Tesla K80, 3.7, 470.256.02\n1, NVIDIA H100 80GB HBM3, 9.0, 550.54.15\nsome message\n"
    gpus = gpu_compat.SmiGpu.parse_all(table)
    assert [(gpu.index, gpu.name, gpu.capability, gpu.driver) for gpu in gpus] == [
        (0, "Tesla K80", (3, 7), "470.256.02"),
        (1, "NVIDIA H100 80GB HBM3", (9, 0), "550.54.15"),
    ]
    assert gpu_compat.SmiGpu.parse_all(gpu_compat.NVML_LOST) == ()
    assert gpu_compat.lost_gpus(f"{gpu_compat.NVML_LOST}\n") and not gpu_compat.lost_gpus(table)


def test_a_build_with_blackwell_code_runs_there():
    assert kernel_support((10, 0), (*TF_2_21_TARGETS, "sm_100")).level == "ok"
    assert kernel_support((12, 0), ("sm_90", "sm_120")).level == "ok"


def test_ptx_alone_means_a_jit_on_the_first_run_and_arch_specific_code_runs_on_its_own_gpu_only():
    support = kernel_support((8, 6), ("sm_70", "compute_75"))
    assert support.level == "warn" and "compute_75 PTX" in support.detail and "CUDA cache" in support.detail
    assert kernel_support((8, 6), ("sm_70", "compute_80")).level == "ok"  # compute_80: sm_80 code too
    assert kernel_support((9, 0), ("sm_90a",)).level == "ok"
    assert kernel_support((9, 1), ("sm_90a",)).level == "FAIL"


def test_a_cpu_build_has_no_kernels_for_any_gpu():
    support = kernel_support((8, 0), ())
    assert support.level == "FAIL" and "--variant gpu" in support.fix


def _report(**changes) -> str:
    fields = {
        "tensorflow": "2.21.0",
        "cuda": "12.5.1",
        "cudnn": "9",
        "targets": list(TF_2_21_TARGETS),
        "gpus": [{"name": "NVIDIA A100", "compute_capability": [8, 0], "conv": "ok", "xla": "ok"}],
        "profiling": "open",
    }
    return "some TensorFlow chatter\n" + json.dumps({**fields, **changes}) + "\n"


def test_the_probe_report_parses_from_the_last_stdout_line():
    report = ProbeReport.parse(_report())
    assert report is not None
    assert report.gpus == (gpu_compat.Gpu("NVIDIA A100", (8, 0), "ok", "ok"),)
    assert report.build == "TensorFlow 2.21.0 (CUDA 12.5.1, cuDNN 9, " + ", ".join(TF_2_21_TARGETS) + ")"
    assert ProbeReport.parse("2\n") is None and ProbeReport.parse("") is None
    cpu = ProbeReport.parse(_report(cuda=None, cudnn=None, targets=[], gpus=[]))
    assert cpu is not None and cpu.build == "TensorFlow 2.21.0 (not a CUDA build)"


def test_tensorflow_reason_skips_its_start_up_chatter():
    stderr = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796161666.824154       9 port.cc:153] oneDNN custom operations are on.\n"
        "W0000 00:00:1796161669.1       9 gpu_device.cc:2342] Cannot dlopen some GPU libraries. Please make "
        "sure the missing libraries mentioned above are installed properly\n"
        "I0000 00:00:1796161669.2       9 cpu_feature_guard.cc:210] This TensorFlow binary is optimized\n"
    )
    assert gpu_compat.tensorflow_reason(stderr).startswith("W0000 00:00:1796161669.1")
    assert "Cannot dlopen some GPU libraries" in gpu_compat.tensorflow_reason(stderr)
    assert gpu_compat.tensorflow_reason(stderr.replace("W0000", "I0000")) is None

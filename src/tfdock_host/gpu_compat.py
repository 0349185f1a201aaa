"""Will TensorFlow run on this GPU? The doctor's TensorFlow probe (code run in the runtime image) and the
plain decisions over what it reports: no TensorFlow here (the host never imports it), so testable anywhere.

CUDA's rules for a GPU of compute capability X.Y and a build's targets: machine code for sm_X.y runs on X.Y
when y <= Y (same major: binary compatible), except arch-specific `sm_XYa` code, which runs on X.Y only; PTX
for compute_AB can be compiled by the driver for any AB <= X.Y, at the first use of each kernel (the JIT:
minutes for TensorFlow, cached in ~/.nv/ComputeCache). Blackwell (10.0 and later) is the exception this
table knows: with only older PTX, TensorFlow 2.21's wheel is reported to fail there (CUDA_ERROR_INVALID_PTX;
XLA aborts on sm_120: tensorflow/tensorflow issues 99592, 101746, 111958). TensorFlow's own build lists
`compute_XY` for "PTX in addition to SASS" (its .bazelrc), so compute_90 means sm_90 code and its PTX.

The driver: CUDA 11 and later run on any driver of at least the major release's minimum, through minor
version compatibility (NVIDIA's CUDA compatibility guide: 12.x needs >= 525.60.13, 11.x >= 450.80.02 on
Linux); a driver below it cannot run the image's CUDA wheels at all.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from typing import Any, Literal

Level = Literal["ok", "warn", "FAIL"]
Capability = tuple[int, int]
BLACKWELL = (10, 0)
KEPLER_LAST = (3, 7)

# The CUDA targets of TensorFlow's own Linux x86_64 CUDA wheels, as its release builds set them
# (HERMETIC_CUDA_COMPUTE_CAPABILITIES in its .bazelrc): what a GPU is judged by when the image doctor ran
# is not a CUDA build (the cpu variant) or the gpu image is not built yet.
CUDA_WHEEL_TARGETS = {"2.21": ("sm_60", "sm_70", "sm_80", "sm_89", "compute_90")}
# The last TensorFlow whose wheel had kernels for Kepler (3.5, 3.7: K40, K80): 2.14's CUDA 11.8 build
# carried sm_35 (tf.sysconfig.get_build_info()); 2.15 moved to CUDA 12, which has no Kepler target at all.
KEPLER_ADVICE = (
    "none current: the last TensorFlow with Kepler (3.5, 3.7) kernels was 2.14 (CUDA 11.8, sm_35 code; "
    "Kepler's last driver R470 runs it); use a newer GPU or --gpus none"
)
# What a Blackwell GPU (10.0 B200, 12.0 RTX 50xx) can do: no installable TensorFlow has kernels for it
# (benchmarks/gpu_arches.py read the fat binaries of 2.21 and tf-nightly 2.23.0.dev20261026: SASS sm_60 to
# sm_90, PTX compute_90; docs/images.md). One place, so docs and doctor agree.
BLACKWELL_ADVICE = (
    "no installable TensorFlow has sm_100/sm_120 kernels (2.21 and tf-nightly 2.23 carry sm_60-sm_90 and "
    "compute_90 PTX only; NGC's TensorFlow images are Python 3.12, no --base-image here): use --gpus none "
    "or a GPU of compute capability 9.0 or lower (docs/images.md)"
)
# What NVML answers in a container whose device access is gone: after `systemctl daemon-reload` on a host
# whose engine uses the systemd cgroup driver, running GPU containers lose their devices (NVIDIA's notice,
# NVIDIA/nvidia-docker#1730). The container must be recreated; the toolkit's symlinks stop it recurring.
NVML_LOST = "Failed to initialize NVML: Unknown Error"
NVML_LOST_FIX = (
    "recreate the containers (`invoke clean`, then run again; `invoke train --resume` continues); to stop "
    "it recurring: `sudo nvidia-ctk system create-dev-char-symlinks --create-all` on the host (NVIDIA "
    'Container Toolkit), or `"exec-opts": ["native.cgroupdriver=cgroupfs"]` in /etc/docker/daemon.json'
)
# The oldest driver of each CUDA major release that runs any of its minor releases (Linux).
MINIMUM_DRIVER = {11: (450, 80, 2), 12: (525, 60, 13)}
# nvidia-smi as doctor runs it in a container with the GPU request: one CSV row per GPU.
NVIDIA_SMI_QUERY = ["--query-gpu=index,name,compute_cap,driver_version", "--format=csv,noheader"]

# Runs in the runtime image with the GPU request, as `python -c`; its last stdout line is one JSON report.
# TF_CPP_MIN_LOG_LEVEL=1 keeps TensorFlow's warnings (why it found no GPU: "Cannot dlopen some GPU
# libraries ...") on stderr; tensorflow_reason() picks them from between the info lines TF 2.21 prints anyway.
TENSORFLOW_PROBE = """\
import json, os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "1"
import tensorflow as tf

def conv():
    images = tf.random.normal([4, 16, 16, 3])
    kernel = tf.Variable(tf.random.normal([3, 3, 3, 8]))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.nn.conv2d(images, kernel, 1, "SAME") ** 2)
    float(tf.reduce_sum(tape.gradient(loss, kernel)))

def xla():
    matrix = tf.random.normal([64, 64])
    float(tf.reduce_sum(tf.function(tf.linalg.matmul, jit_compile=True)(matrix, matrix)))

def outcome(check):
    try:
        check()
        return "ok"
    except Exception as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return (lines[-1] if lines else type(error).__name__)[:300]

build = tf.sysconfig.get_build_info()
report = {
    "tensorflow": tf.__version__,
    "cuda": build.get("cuda_version"),
    "cudnn": build.get("cudnn_version"),
    "targets": list(build.get("cuda_compute_capabilities") or []),
    "gpus": [],
    "profiling": None,
}
for index, gpu in enumerate(tf.config.list_physical_devices("GPU")):
    details = tf.config.experimental.get_device_details(gpu)
    with tf.device(f"/GPU:{index}"):
        report["gpus"].append({
            "name": details.get("device_name", gpu.name),
            "compute_capability": list(details.get("compute_capability") or []),
            "conv": outcome(conv),
            "xla": outcome(xla),
        })
try:
    with open("/proc/driver/nvidia/params") as params:
        report["profiling"] = "admin-only" if "RmProfilingAdminOnly: 1" in params.read() else "open"
except OSError:
    pass
print(json.dumps(report))
"""

PROFILING_FIX = (
    "for GPU traces with --profile: `options nvidia NVreg_RestrictProfilingToAdminUsers=0` in "
    "/etc/modprobe.d/nvidia-profiling.conf on the host, then reboot (docs/ide.md)"
)


@dataclasses.dataclass(frozen=True)
class Support:
    level: Level
    detail: str
    fix: str = ""


@dataclasses.dataclass(frozen=True)
class SmiGpu:
    """One row of `nvidia-smi --query-gpu=index,name,compute_cap,driver_version --format=csv,noheader`."""

    index: int
    name: str
    capability: Capability | None
    driver: str

    @classmethod
    def parse_all(cls, stdout: str) -> tuple[SmiGpu, ...]:
        """The GPUs nvidia-smi listed; rows that are not such a row (a message) are skipped."""
        gpus = []
        for line in stdout.splitlines():
            fields = [field.strip() for field in line.split(",")]
            if len(fields) != 4 or not fields[0].isdigit():
                continue
            match = re.fullmatch(r"(\d+)\.(\d+)", fields[2])
            capability = (int(match.group(1)), int(match.group(2))) if match else None
            gpus.append(cls(int(fields[0]), fields[1], capability, fields[3]))
        return tuple(gpus)

    def __str__(self) -> str:
        capability = _shown(self.capability) if self.capability else "compute capability unknown"
        return f"GPU {self.index}: {self.name} ({capability}, driver {self.driver})"


@dataclasses.dataclass(frozen=True)
class Gpu:
    name: str
    capability: Capability | None
    conv: str  # "ok" or TensorFlow's error
    xla: str


@dataclasses.dataclass(frozen=True)
class ProbeReport:
    tensorflow: str
    cuda: str | None
    cudnn: str | None
    targets: tuple[str, ...]
    gpus: tuple[Gpu, ...]
    profiling: str | None  # "admin-only", "open", or None where the driver's params are not visible

    @classmethod
    def parse(cls, stdout: str) -> ProbeReport | None:
        """The probe's report from its stdout, or None if its last line is no report."""
        lines = stdout.strip().splitlines()
        try:
            fields: dict[str, Any] = json.loads(lines[-1]) if lines else {}
            gpus = tuple(
                Gpu(
                    gpu["name"],
                    tuple(gpu["compute_capability"]) if gpu["compute_capability"] else None,
                    gpu["conv"],
                    gpu["xla"],
                )
                for gpu in fields["gpus"]
            )
            return cls(
                fields["tensorflow"],
                fields["cuda"],
                fields["cudnn"],
                tuple(fields["targets"]),
                gpus,
                fields["profiling"],
            )
        except (ValueError, KeyError, TypeError):
            return None

    @property
    def build(self) -> str:
        if not self.cuda:
            return f"TensorFlow {self.tensorflow} (not a CUDA build)"
        return (
            f"TensorFlow {self.tensorflow} (CUDA {self.cuda}, cuDNN {self.cudnn}, {', '.join(self.targets)})"
        )


# What TensorFlow logs at every start whatever TF_CPP_MIN_LOG_LEVEL says: info lines ("I0000 00:00:...
# port.cc:153] oneDNN custom operations are on") and absl's note about them.
_CHATTER = re.compile(r"I\d{4} |WARNING: All log messages before absl::InitializeLog\(\)")


def tensorflow_reason(stderr: str) -> str | None:
    """TensorFlow's last word on stderr that is not start-up chatter: why it found no GPU, say."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = [line for line in lines if not _CHATTER.match(line)]
    return said[-1] if said else None


def _targets(targets: Sequence[str]) -> tuple[set[Capability], set[Capability], set[Capability]]:
    """(machine code, arch-specific machine code, PTX) capabilities of build targets such as sm_80,
    sm_90a, compute_90 (or 8.0, as some builds write them)."""
    code: set[Capability] = set()
    exact: set[Capability] = set()
    ptx: set[Capability] = set()
    for target in targets:
        match = re.fullmatch(r"(sm|compute)_(\d+?)(\d)(a?)|(\d+)\.(\d)", target.strip())
        if not match:
            continue
        if match.group(5):
            code.add((int(match.group(5)), int(match.group(6))))
            continue
        capability = (int(match.group(2)), int(match.group(3)))
        if match.group(1) == "compute":  # TensorFlow's compute_XY: PTX in addition to sm_XY code
            ptx.add(capability)
            code.add(capability)
        else:
            (exact if match.group(4) else code).add(capability)
    return code, exact, ptx


def _shown(capability: Capability) -> str:
    return f"{capability[0]}.{capability[1]}"


def kernel_support(capability: Capability, targets: Sequence[str]) -> Support:
    """Whether a build with these CUDA targets has kernels for a GPU of this compute capability."""
    if not targets:
        return Support("FAIL", "this TensorFlow has no CUDA kernels", "use the gpu variant (--variant gpu)")
    code, exact, ptx = _targets(targets)
    shown = _shown(capability)
    native = [c for c in code if c[0] == capability[0] and c[1] <= capability[1]] + [
        c for c in exact if c == capability
    ]
    if native:
        return Support("ok", f"{shown}: sm_{''.join(map(str, max(native)))} kernels")
    jit = sorted(c for c in ptx if c <= capability)
    if capability >= BLACKWELL:
        via = f" (only compute_{''.join(map(str, jit[-1]))} PTX, which fails to JIT there)" if jit else ""
        return Support(
            "FAIL",
            f"{shown} (Blackwell or later): this TensorFlow has no kernels for it{via}",
            BLACKWELL_ADVICE,
        )
    if jit:
        source = "".join(map(str, jit[-1]))
        return Support(
            "warn",
            f"{shown}: no machine code for it, the driver compiles compute_{source} PTX on first use "
            "(minutes of JIT on the first run; later runs reuse the CUDA cache under ~/.cache/tfdock)",
            "expect a slow start; a GPU with native kernels avoids it",
        )
    oldest = min(code | exact | ptx) if code | exact | ptx else None
    below = f", older than its oldest target {_shown(oldest)}" if oldest else ""
    return Support(
        "FAIL",
        f"{shown}: this TensorFlow has no kernels for it{below}",
        KEPLER_ADVICE
        if capability <= KEPLER_LAST
        else "use a newer GPU, an older TensorFlow built for it, or --gpus none",
    )


def lost_gpus(output: str) -> bool:
    """Whether nvidia-smi's output is NVML's answer in a container that lost (or never got) its devices."""
    return NVML_LOST in output


def lock_cuda(lock_text: str) -> str | None:
    """The CUDA release of a lock's CUDA runtime wheel (nvidia-cuda-runtime-cu12==12.9.79 -> "12.9")."""
    match = re.search(r"^nvidia-cuda-runtime-cu\d+==(\d+)\.(\d+)", lock_text, re.M)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def lock_tensorflow(lock_text: str) -> str | None:
    """The TensorFlow version a lock pins (tensorflow==2.21.0 -> "2.21.0")."""
    match = re.search(r"^tensorflow==([\d.]+)", lock_text, re.M)
    return match.group(1) if match else None


def _version(text: str) -> tuple[int, ...] | None:
    return tuple(int(part) for part in text.split(".")) if re.fullmatch(r"\d+(\.\d+)*", text) else None


def driver_support(driver: str, cuda: str) -> Support:
    """Whether a host driver (nvidia-smi's driver_version) runs the image's CUDA release."""
    have, wanted = _version(driver), _version(cuda)
    if have is None or wanted is None:
        return Support("warn", f"cannot compare driver {driver!r} with CUDA {cuda!r}")
    minimum = MINIMUM_DRIVER.get(wanted[0])
    if minimum is None:
        return Support("warn", f"no known minimum driver for CUDA {cuda}")
    shown = ".".join(map(str, minimum))
    if have < minimum:
        return Support(
            "FAIL",
            f"driver {driver} is older than {shown}, the oldest that runs CUDA {wanted[0]}.x (the image's "
            f"CUDA wheels are {cuda})",
            f"upgrade the host's NVIDIA driver to {shown} or later (CUDA {wanted[0]}.x runs on any of them "
            "by minor version compatibility); or --gpus none",
        )
    return Support("ok", f"driver {driver} runs CUDA {cuda} (>= {shown})")


def wheel_targets(tensorflow: str) -> tuple[str, ...] | None:
    """The CUDA targets of TensorFlow's own CUDA wheel of this version, where known."""
    return CUDA_WHEEL_TARGETS.get(".".join(tensorflow.split(".")[:2]))

"""All runtime switches, set once before anything else touches TensorFlow.

Seeds, op determinism, logical CPU devices, GPU memory growth, mixed precision, XLA, the distribution
strategy and its collectives are decided here; the rest of the package reads the resulting `Runtime`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import keras
import tensorflow as tf

from tfdock.config import TrainConfig
from tfdock.errors import ConfigError

FLOAT32 = "float32"
MIXED_FLOAT16 = "mixed_float16"  # needs loss scaling: float16's range is narrow
MIXED_BFLOAT16 = "mixed_bfloat16"  # float32's range: no loss scaling
ComputeCapability = tuple[int, int]


def precision_policy(mode: str, capabilities: Sequence[ComputeCapability | None]) -> tuple[str, str]:
    """(the Keras dtype policy, why) for --mixed-precision `mode` on GPUs of these compute capabilities
    (None: TensorFlow did not say). Auto goes by the weakest GPU, as every replica runs the same maths:
    bfloat16 from 8.0 (Ampere on: its tensor cores take bfloat16 at float16's speed, with float32's range),
    float16 on 7.x (Volta, Turing: tensor cores, no bfloat16), float32 below (6.x runs float16 at a
    fraction of float32's speed, or no faster) and on CPU (mixed precision there is emulated, slower)."""
    if mode == "off":
        return FLOAT32, "--mixed-precision off"
    if mode == "on":
        return MIXED_FLOAT16, "--mixed-precision on"
    if mode == "bfloat16":
        return MIXED_BFLOAT16, "--mixed-precision bfloat16"
    if not capabilities:
        return FLOAT32, "auto: no GPU, and mixed precision is slow on CPU"
    if None in capabilities:
        return FLOAT32, "auto: a GPU of unknown compute capability"
    weakest = min(capability for capability in capabilities if capability is not None)
    shown = f"compute capability {weakest[0]}.{weakest[1]}"
    if weakest >= (8, 0):
        return MIXED_BFLOAT16, f"auto: {shown} has bfloat16 tensor cores"
    if weakest >= (7, 0):
        return MIXED_FLOAT16, f"auto: {shown} has float16 tensor cores, no bfloat16"
    return FLOAT32, f"auto: {shown} has no tensor cores (float16 is no faster there)"


@dataclasses.dataclass(frozen=True)
class Runtime:
    strategy: tf.distribute.Strategy
    strategy_name: str
    replicas: int
    is_chief: bool  # only the chief writes checkpoints, exports and metrics
    devices: tuple[str, ...]
    gpus: tuple[str, ...]
    precision: str  # the Keras dtype policy
    precision_reason: str
    collectives: str  # how the replicas all-reduce ("" for one replica)
    jit_compile: bool
    global_batch_size: int
    learning_rate: float  # the peak rate, scaled linearly with the replicas
    threads: int | None = None  # per TensorFlow pool (intra-op and inter-op), by the CPU quota; None: TF's
    cpu_quota: float | None = None  # CPUs by the container's cgroup quota; None: no quota

    @property
    def loss_scaled(self) -> bool:
        return self.precision == MIXED_FLOAT16

    def summary(self, warmup_steps: int = 0) -> str:
        gpus = ", ".join(self.gpus) or "none"
        plural = "s" if self.replicas > 1 else ""
        strategy = f"{self.strategy_name} ({self.replicas} replica{plural}"
        if self.replicas > 1:
            strategy += f"; global batch {self.global_batch_size}, learning rate x{self.replicas}"
            if warmup_steps:
                strategy += f", warmed up from x1 over {warmup_steps} steps"
            strategy += f"; collectives: {self.collectives}"
        if self.threads is None:
            threads = "TensorFlow's default (no CPU quota)"
        else:
            many = "s" if self.threads > 1 else ""
            threads = f"{self.threads} thread{many} (CPU quota {self.cpu_quota:g})"
        return (
            f"devices: {', '.join(self.devices)} | threads: {threads} | GPUs visible to TensorFlow: {gpus} "
            f"| strategy: {strategy}) "
            f"| precision: {self.precision} ({self.precision_reason}) "
            f"| XLA: {'on' if self.jit_compile else 'off'}"
        )


CGROUP_ROOT = Path("/sys/fs/cgroup")


def cpu_quota(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """The CPUs this container may use by its cgroup's CPU quota (`docker run --cpus 1.5`: 1.5), or None
    when there is none. cgroup v2: cpu.max holds "QUOTA PERIOD" or "max PERIOD"; v1: cpu.cfs_quota_us
    (-1: none) over cpu.cfs_period_us, under cpu/ (or cpu,cpuacct/)."""
    v2 = cgroup_root / "cpu.max"
    try:
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        for controller in ("cpu", "cpu,cpuacct"):
            v1 = cgroup_root / controller
            if (v1 / "cpu.cfs_quota_us").is_file():
                quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
                return None if quota_us <= 0 else quota_us / int((v1 / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError, ZeroDivisionError):
        return None  # unreadable: TensorFlow's own sizing, as without a quota
    return None


def threads_for_quota(quota: float | None, cores: int) -> int | None:
    """Threads per TensorFlow pool for a CPU quota: the quota rounded up (a fraction of a CPU still runs a
    thread), at most the cores this process may run on; None (TensorFlow's default) without a quota."""
    if quota is None:
        return None
    return max(1, min(cores, math.ceil(quota)))


def _size_thread_pools(threads: int) -> None:
    """TensorFlow sizes its pools by the machine's cores, not the container's quota: 64 threads sharing one
    CPU's quota get throttled in turn (tensorflow/tensorflow#17206). Must run before the first op."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        # TensorFlow is already initialised in this process: fine if its pools have this size already.
        if tf.config.threading.get_intra_op_parallelism_threads() != threads:
            raise ConfigError(
                "the thread pools must be sized before TensorFlow initialises",
                "run the training in a fresh process",
            ) from None


def _split_cpu(count: int) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError:
        # TensorFlow is already initialised in this process: fine if it was split the same way before.
        if len(tf.config.list_logical_devices("CPU")) != count:
            raise ConfigError(
                "--cpu-devices must be set before TensorFlow initialises its devices",
                "run the training in a fresh process",
            ) from None


def _is_chief(resolver: tf.distribute.cluster_resolver.ClusterResolver) -> bool:
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0 and not has_chief)


def _strategy(cpu_devices: int, gpus: list[str]) -> tuple[tf.distribute.Strategy, str, str, bool]:
    """The strategy, its display name, its collectives, and whether this process is the chief.

    The collectives are chosen here rather than left to TensorFlow: across workers it takes gRPC rings
    unless told NCCL, which is the fast path between GPUs; on CPUs a ring is the one implementation."""
    if os.environ.get("TF_CONFIG"):
        try:
            json.loads(os.environ["TF_CONFIG"])
        except ValueError:
            raise ConfigError("TF_CONFIG is not valid JSON") from None
        implementation = tf.distribute.experimental.CommunicationImplementation
        chosen = implementation.NCCL if gpus else implementation.RING
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(implementation=chosen)
        )
        is_chief = _is_chief(strategy.cluster_resolver)
        return strategy, "MultiWorkerMirroredStrategy", f"{chosen.value} across workers", is_chief
    if cpu_devices > 1:
        cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
        # TensorFlow's own pick for CPUs, named so that the summary can say it.
        reduction = tf.distribute.ReductionToOneDevice()
        strategy = tf.distribute.MirroredStrategy(cpus, cross_device_ops=reduction)
        return strategy, "MirroredStrategy over logical CPUs", "reduction to one device", True
    if len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy(cross_device_ops=tf.distribute.NcclAllReduce())
        return strategy, "MirroredStrategy", "NCCL all-reduce", True
    return tf.distribute.get_strategy(), "default", "", True


def _compute_capability(gpu: tf.config.PhysicalDevice) -> ComputeCapability | None:
    capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
    return tuple(capability) if capability else None


def setup(config: TrainConfig, cgroup_root: Path = CGROUP_ROOT) -> Runtime:
    quota = cpu_quota(cgroup_root)
    threads = threads_for_quota(quota, len(os.sched_getaffinity(0)))
    if threads is not None:
        _size_thread_pools(threads)
    if config.cpu_devices > 1:
        _split_cpu(config.cpu_devices)
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # Grow GPU memory on demand instead of reserving all of it, so other processes can share the card.
        tf.config.experimental.set_memory_growth(gpu, True)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    precision, precision_reason = precision_policy(
        config.mixed_precision, [_compute_capability(gpu) for gpu in gpus]
    )
    keras.mixed_precision.set_global_policy(precision)

    gpu_names = [gpu.name.removeprefix("/physical_device:") for gpu in gpus]
    strategy, strategy_name, collectives, is_chief = _strategy(config.cpu_devices, gpu_names)
    devices = [device.name.rpartition("device:")[2] for device in tf.config.list_logical_devices()]
    if config.cpu_devices > 1:
        devices = [f"{', '.join(devices)} (logical CPUs: a stand-in for {config.cpu_devices} GPUs)"]
    replicas = strategy.num_replicas_in_sync
    return Runtime(
        strategy=strategy,
        strategy_name=strategy_name,
        replicas=replicas,
        is_chief=is_chief,
        devices=tuple(devices),
        gpus=tuple(gpu_names),
        precision=precision,
        precision_reason=precision_reason,
        collectives=collectives,
        jit_compile=config.jit_compile,
        threads=threads,
        cpu_quota=quota,
        global_batch_size=config.batch_size * replicas,
        learning_rate=config.learning_rate * replicas,
    )

"""All runtime switches, set once before anything else touches TensorFlow.

Seeds, op determinism, logical CPU devices, GPU memory growth, mixed precision, XLA and the distribution
strategy are decided here; the rest of the package reads the resulting `Runtime`.
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import tensorflow as tf

from tfdock.config import TrainConfig
from tfdock.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Runtime:
    strategy: tf.distribute.Strategy
    strategy_name: str
    replicas: int
    is_chief: bool  # only the chief writes checkpoints, exports and metrics
    devices: tuple[str, ...]
    gpus: tuple[str, ...]
    mixed_precision: bool
    jit_compile: bool
    global_batch_size: int
    learning_rate: float  # the peak rate, scaled linearly with the replicas

    def summary(self) -> str:
        gpus = ", ".join(self.gpus) or "none"
        plural = "s" if self.replicas > 1 else ""
        strategy = f"{self.strategy_name} ({self.replicas} replica{plural}"
        if self.replicas > 1:
            strategy += f"; global batch {self.global_batch_size}, learning rate x{self.replicas}"
        return (
            f"devices: {', '.join(self.devices)} | GPUs visible to TensorFlow: {gpus} "
            f"| strategy: {strategy}) "
            f"| mixed precision: {'on' if self.mixed_precision else 'off'} "
            f"| XLA: {'on' if self.jit_compile else 'off'}"
        )


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


def _strategy(cpu_devices: int, gpus: list[str]) -> tuple[tf.distribute.Strategy, str, bool]:
    """The strategy, its display name, and whether this process is the chief."""
    if os.environ.get("TF_CONFIG"):
        try:
            json.loads(os.environ["TF_CONFIG"])
        except ValueError:
            raise ConfigError("TF_CONFIG is not valid JSON") from None
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        return strategy, "MultiWorkerMirroredStrategy", _is_chief(strategy.cluster_resolver)
    if cpu_devices > 1:
        cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(cpus), "MirroredStrategy over logical CPUs", True
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy(), "MirroredStrategy", True
    return tf.distribute.get_strategy(), "default", True


def setup(config: TrainConfig) -> Runtime:
    if config.cpu_devices > 1:
        _split_cpu(config.cpu_devices)
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # Grow GPU memory on demand instead of reserving all of it, so other processes can share the card.
        tf.config.experimental.set_memory_growth(gpu, True)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    mixed_precision = config.mixed_precision == "on" or (config.mixed_precision == "auto" and bool(gpus))
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")

    gpu_names = [gpu.name.removeprefix("/physical_device:") for gpu in gpus]
    strategy, strategy_name, is_chief = _strategy(config.cpu_devices, gpu_names)
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
        mixed_precision=mixed_precision,
        jit_compile=config.jit_compile,
        global_batch_size=config.batch_size * replicas,
        learning_rate=config.learning_rate * replicas,
    )

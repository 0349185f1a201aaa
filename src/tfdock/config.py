"""The one training configuration: a `TrainConfig` dataclass and the command line that fills it."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfdock.cli import ArgumentParser
from tfdock.errors import ConfigError
from tfdock.quiet_start import VERBOSE_FLAG

DATASETS = ("mnist", "fashion-mnist")
LR_SCHEDULES = ("restarts", "onecycle", "cosine", "constant")
MIXED_PRECISION_MODES = ("auto", "on", "bfloat16", "off")
FLIP_MODES = ("auto", "on", "off")
# Datasets whose classes survive a left-right mirror (a mirrored shirt is a shirt; a mirrored 2 is no digit).
MIRROR_SAFE_DATASETS = ("fashion-mnist",)
LATEST = "latest"
# What a resumed run takes from its command line; everything else is the saved run's (its schedule, for one,
# is sized by its epochs). `steps_per_call` changes no weight, `step_delay` is a test's pacing.
RESUME_OVERRIDES = ("data_dir", "output_dir", "profile", "download", "step_delay", "steps_per_call")
# What the same options build and how they train, saved with each run: 2 since each block pools before its
# batch norm and the first works at the full 28x28; 3 since Adam's second-moment decay is 0.99. A checkpoint
# of an earlier run holds the same variables as this one's for the same options, so resuming it here would
# train on silently as another model or with another optimizer.
RECIPE_VERSION = 3


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """What the training pipeline does to each epoch's images (0-based epochs; None: never)."""

    flip_from_epoch: int | None = None  # mirror left-right, each image with probability 1/2
    shift_pixels: int = 0  # shift by up to this many whole pixels each way, zeros shifted in
    shift_from_epoch: int = 0

    def flips(self, epoch: int) -> bool:
        return self.flip_from_epoch is not None and epoch >= self.flip_from_epoch

    def shifts(self, epoch: int) -> bool:
        return self.shift_pixels > 0 and epoch >= self.shift_from_epoch


NO_AUGMENTATION = Augmentation()


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. Defaults are the tuned recipe (docs/recipe.md)."""

    dataset: str = "fashion-mnist"
    data_dir: str = "/data"
    output_dir: str = "/outputs"
    download: bool = False
    epochs: int = 15
    batch_size: int = 128
    learning_rate: float = 0.008
    lr_schedule: str = "restarts"
    seed: int = 0
    validation_split: float = 0.1
    deterministic: bool = True
    mixed_precision: str = "auto"
    jit_compile: bool = False
    resume: str | None = None
    run_name: str | None = None
    profile: tuple[int, int] | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    cpu_devices: int = 1
    filters: tuple[int, ...] = (16, 32, 128)
    dense: int = 128
    dropout: float = 0.0
    batch_norm: bool = True
    label_smoothing: float = 0.1
    translate: int = 1
    translate_after: int = 3
    flip: str = "auto"
    flip_after: int = 3
    steps_per_call: int = 1
    step_delay: float = 0.0
    # The options the command line gave, so that --resume can tell `--epochs 15` from no --epochs at all
    # (argparse fills in defaults). Not part of the run: neither saved nor compared.
    given: frozenset[str] = dataclasses.field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        minimums = {"epochs": 1, "batch_size": 1, "cpu_devices": 1, "dense": 0, "steps_per_call": 1}
        minimums.update({"limit_train": 1, "limit_test": 1, "flip_after": 0, "translate_after": 0})
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if value is not None and value < minimum:
                raise ConfigError(f"--{_flag(name)} must be >= {minimum} (got {value})")
        if not 0 <= self.step_delay <= 10:
            raise ConfigError(f"--step-delay must be in [0, 10] seconds (got {self.step_delay})")
        if not self.learning_rate > 0:
            raise ConfigError(f"--learning-rate must be > 0 (got {self.learning_rate})")
        if not 0 <= self.validation_split < 1:
            raise ConfigError(f"--validation-split must be in [0, 1) (got {self.validation_split})")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1) (got {self.dropout})")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"--label-smoothing must be in [0, 1) (got {self.label_smoothing})")
        if not 0 <= self.translate <= 7:
            raise ConfigError(f"--translate must be in [0, 7] pixels (got {self.translate})")
        if not 1 <= len(self.filters) <= 4 or min(self.filters) < 1:
            raise ConfigError(
                f"--filters takes 1 to 4 counts >= 1 (got {','.join(map(str, self.filters))})",
                "each block halves the 28x28 image",
            )
        if self.jit_compile and self.deterministic:
            raise ConfigError(
                "--jit-compile cannot be deterministic: XLA has no deterministic max-pool gradient",
                "add --no-deterministic",
            )
        if self.profile is not None and not 0 <= self.profile[0] < self.profile[1]:
            raise ConfigError(f"--profile must be START:STOP with 0 <= START < STOP (got {self.profile})")
        for name, choices in (
            ("dataset", DATASETS),
            ("lr_schedule", LR_SCHEDULES),
            ("mixed_precision", MIXED_PRECISION_MODES),
            ("flip", FLIP_MODES),
        ):
            if getattr(self, name) not in choices:
                raise ConfigError(f"--{_flag(name)} must be one of {', '.join(choices)}")

    @property
    def flips_images(self) -> bool:
        """Whether training mirrors images left-right at random (auto: for datasets where that is safe)."""
        return self.flip == "on" or (self.flip == "auto" and self.dataset in MIRROR_SAFE_DATASETS)

    @property
    def augmentation(self) -> Augmentation:
        return Augmentation(
            self.flip_after if self.flips_images else None, self.translate, self.translate_after
        )

    @property
    def mirrors_at_inference(self) -> bool:
        """Whether the exported model averages its answers over the mirror image (if it trained on some)."""
        return self.flips_images and self.epochs > self.flip_after

    @property
    def shifts_at_inference(self) -> bool:
        """Whether the exported model averages its answers over the image moved a pixel each way (if it
        trained on shifted images)."""
        return self.translate > 0 and self.epochs > self.translate_after

    def as_dict(self) -> dict[str, Any]:
        """The run's settings, as config.json and metrics.json keep them."""
        fields = dataclasses.asdict(self)
        del fields["given"]
        return {**fields, "recipe_version": RECIPE_VERSION}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json_file(cls, path: Path) -> TrainConfig:
        try:
            fields = json.loads(path.read_text())
            if fields.pop("recipe_version", 1) != RECIPE_VERSION:
                raise ConfigError(
                    f"{path.parent}: trained by an earlier tfdock, whose recipe differs for the same "
                    "options: it cannot resume here",
                    "finish it with the tfdock it started with, or train a new run",
                )
            fields["filters"] = tuple(fields["filters"])
            if fields.get("profile") is not None:
                fields["profile"] = tuple(fields["profile"])
            return cls(**fields)
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise ConfigError(f"{path}: cannot read the run's saved config ({error})") from None

    def resumed(self, saved: TrainConfig, run_dir: Path) -> TrainConfig:
        """The saved run's config with this command line's RESUME_OVERRIDES. Any other option the command
        line gave with a value other than the saved run's is refused, not silently dropped."""
        refused = [
            name
            for name in (field.name for field in dataclasses.fields(self))
            if name in self.given
            and name not in (*RESUME_OVERRIDES, "resume")
            and getattr(self, name) != getattr(saved, name)
        ]
        if refused:
            given = ", ".join(f"--{_flag(name)} {_shown(getattr(self, name))}" for name in refused)
            kept = ", ".join(f"--{_flag(name)} {_shown(getattr(saved, name))}" for name in refused)
            raise ConfigError(
                f"{given} with --resume: a resumed run keeps its saved {kept}",
                "drop the option to resume, or train a new run without --resume",
            )
        overrides = {name: getattr(self, name) for name in RESUME_OVERRIDES}
        return dataclasses.replace(saved, **overrides, resume=str(run_dir))


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _shown(value: Any) -> str:
    """A value as its option is written: filters 16,32,128."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _step_range(text: str) -> tuple[int, int]:
    start, sep, stop = text.partition(":")
    if not sep or not start.isdigit() or not stop.isdigit():
        raise ValueError(text)
    return int(start), int(stop)


_step_range.__name__ = "START:STOP step range"  # argparse names the type in its error message


def _counts(text: str) -> tuple[int, ...]:
    return tuple(int(count) for count in text.split(","))


_counts.__name__ = "comma-separated list of counts"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the None of options that are simply off unless given."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.help is None:
            return action.help or ""
        return super()._get_help_string(action) or ""


def build_parser() -> ArgumentParser:
    defaults = TrainConfig()
    parser = ArgumentParser(
        prog="tfdock.train",
        description="Train the tfdock CNN on MNIST or Fashion-MNIST: one custom loop for every device setup.",
        formatter_class=_HelpFormatter,
    )
    data = parser.add_argument_group("data and outputs")
    data.add_argument(
        "--dataset", choices=DATASETS, default=defaults.dataset, help="its files are read from --data-dir"
    )
    data.add_argument("--data-dir", default=defaults.data_dir, help="directory holding the dataset files")
    data.add_argument("--output-dir", default=defaults.output_dir, help="runs are written under it")
    data.add_argument("--download", action="store_true", help="download missing dataset files first")
    data.add_argument(
        "--validation-split",
        type=float,
        default=defaults.validation_split,
        help="fraction of the TRAIN set held out for validation (the test set is never used)",
    )
    data.add_argument("--limit-train", type=int, help="train on the first N training images only")
    data.add_argument("--limit-test", type=int, help="evaluate on the first N test images only")

    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=int, default=defaults.epochs, help="passes over the training set")
    training.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help="per replica; the global batch is this times the number of replicas",
    )
    training.add_argument(
        "--learning-rate",
        type=float,
        default=defaults.learning_rate,
        help="peak learning rate for one replica; scaled linearly with the replicas",
    )
    training.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default=defaults.lr_schedule,
        help="restarts: cosine cycles of 1, 2, 4, 8... epochs, the last ending with the run; "
        "onecycle: linear warm-up then cosine decay; cosine: decay only",
    )
    training.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="seeds the weights, validation split, data order, dropout",
    )
    training.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=defaults.deterministic,
        help="TF op determinism: identical weights for identical seeds",
    )
    training.add_argument(
        "--resume",
        nargs="?",
        const=LATEST,
        metavar="RUN_DIR",
        help="continue a run from its last completed epoch with its saved config (no value: the latest run)",
    )
    training.add_argument("--run-name", help="default: UTC time plus a random suffix")
    training.add_argument(
        "--profile",
        type=_step_range,
        metavar="START:STOP",
        help="TF profiler trace of these global steps into the run's tensorboard dir",
    )

    devices = parser.add_argument_group("devices")
    devices.add_argument(
        "--mixed-precision",
        choices=MIXED_PRECISION_MODES,
        default=defaults.mixed_precision,
        help="on: mixed_float16 with dynamic loss scaling; bfloat16: mixed_bfloat16 (float32's range, no "
        "loss scaling); auto: bfloat16 on GPUs of compute capability >= 8.0, float16 on 7.x, off below and "
        "on CPU",
    )
    devices.add_argument("--jit-compile", action="store_true", help="compile the train step with XLA")
    devices.add_argument(
        "--steps-per-call",
        type=int,
        default=defaults.steps_per_call,
        metavar="N",
        help="training steps per call into TensorFlow: fewer Python round trips for a small model on a "
        "GPU; the same weights, and a signal still stops at a step boundary (after up to N steps)",
    )
    devices.add_argument(
        "--cpu-devices",
        type=int,
        default=defaults.cpu_devices,
        help="split the CPU into N logical devices under MirroredStrategy: a STAND-IN "
        "for N GPUs on machines without GPUs, for testing the distributed path",
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--filters",
        type=_counts,
        default=defaults.filters,
        metavar="BLOCK,BLOCK,...",
        help="filters of each conv + max-pool block, the first at the full 28x28 (1 to 4 counts)",
    )
    model.add_argument(
        "--dense",
        type=int,
        default=defaults.dense,
        help="units of a hidden layer before the classifier (0: none)",
    )
    model.add_argument("--dropout", type=float, default=defaults.dropout, help="before each dense layer")
    model.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=defaults.batch_norm)
    training.add_argument(
        "--label-smoothing",
        type=float,
        default=defaults.label_smoothing,
        help="of the training loss's targets (evaluation reports plain cross-entropy)",
    )
    augmentation = parser.add_argument_group("augmentation (training images only)")
    augmentation.add_argument(
        "--translate", type=int, default=defaults.translate, metavar="PIXELS", help="random shifts of up to "
        "this many pixels each way (0: off)",
    )  # fmt: skip
    augmentation.add_argument(
        "--translate-after", type=int, default=defaults.translate_after, metavar="EPOCHS", help="start "
        "shifting after this many epochs",
    )  # fmt: skip
    augmentation.add_argument(
        "--flip",
        choices=FLIP_MODES,
        default=defaults.flip,
        help="mirror left-right at random; auto = on for fashion-mnist, off for mnist (a mirrored digit is "
        "not a digit)",
    )
    augmentation.add_argument(
        "--flip-after", type=int, default=defaults.flip_after, metavar="EPOCHS", help="start mirroring after "
        "this many epochs: it slows the first epochs and regularises the later ones",
    )  # fmt: skip
    messages = parser.add_argument_group("messages")
    messages.add_argument(
        VERBOSE_FLAG,
        action="store_true",
        help="TensorFlow's start-up notices and its INFO logs (hidden by default; read from the command line "
        "before TensorFlow starts)",
    )
    testing = parser.add_argument_group("testing")
    testing.add_argument(
        "--step-delay", type=float, default=defaults.step_delay, metavar="SECONDS", help="FOR TESTS ONLY: "
        "sleep this long after every training step, so that a test's 'while it trains' moment lasts in steps "
        "on a machine of any speed",
    )  # fmt: skip
    return parser


def parse_args(argv: Sequence[str] | None) -> TrainConfig:
    # Parsed into a namespace holding a marker for every field: argparse then sets only the options given,
    # and the rest take TrainConfig's defaults (the parser's too).
    unset = object()
    fields = [field.name for field in dataclasses.fields(TrainConfig) if field.name != "given"]
    parsed = build_parser().parse_args(argv, argparse.Namespace(**dict.fromkeys(fields, unset)))
    given = {name: getattr(parsed, name) for name in fields if getattr(parsed, name) is not unset}
    # --verbose is not a field: acted on when the package was imported (quiet_start), not part of the run.
    return TrainConfig(**given, given=frozenset(given))

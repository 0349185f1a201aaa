"""The project's declared contract (invoke.yaml, `tfdock.project`): its package, entry points and datasets.

The host side knows the project only through this: which command trains, which evaluates, how each takes
the data and output dirs, which task options it understands, and what files make a dataset present. What
an entry point receives and must do is docs/contract.md.
"""

from __future__ import annotations

import dataclasses
import keyword
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tfdock_host.errors import UsageError

CONTRACT_KEY = "tfdock.project"
# What an entry point's `args` may name; filled in by the task that runs it.
PLACEHOLDERS = ("dataset", "data_dir", "output_dir", "run_dir")
# The task options an entry point may declare a flag for (`invoke train --epochs 3` -> its flag).
TASK_OPTIONS = ("epochs", "batch_size", "resume", "profile", "run_name", "verbose")
ALTERNATIVES = "|"


class ContractError(UsageError):
    """The contract in invoke.yaml is missing a part or has a malformed one."""


@dataclasses.dataclass(frozen=True)
class EntryPoint:
    """A command the tasks run in the image, with the arguments they add and the flags it understands."""

    role: str
    command: tuple[str, ...]
    args: tuple[str, ...] = ()
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def shown(self) -> str:
        """How messages name it: its module, or its command."""
        return self.command[2] if self.command[:2] == ("python", "-m") else " ".join(self.command)

    def argv(self, **values: str) -> list[str]:
        """The command with its declared args, placeholders filled in."""
        return [*self.command, *(arg.format_map(values) for arg in self.args)]

    def flag(self, option: str, task: str) -> str:
        """The entry point's flag for a task option; one line when it declares none."""
        if option not in self.options:
            raise ContractError(
                f"`{task}` needs the {role_option(option)} option, which the {self.role} entry point "
                f"({self.shown}) does not declare",
                f"add `{option}: --its-flag` under {CONTRACT_KEY}.{self.role}.options in invoke.yaml, "
                "or pass the entry point's own flags after --",
            )
        return self.options[option]

    def flags_set_by_args(self) -> set[str]:
        return {arg for arg in self.args if arg.startswith("-")}


def role_option(option: str) -> str:
    return "--" + option.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset the entry points read: where it lives by default, what makes it present, how to fetch it."""

    name: str
    dir: str
    files: tuple[str, ...]
    fetch: tuple[str, ...] = ()
    test_dir: str = ""

    def missing(self, directory: Path) -> list[str]:
        """Required files absent from a dir (each `a|b` is satisfied by either). A directory standing
        where a file should be is one line, not a traceback further on."""
        missing = []
        for required in self.files:
            names = required.split(ALTERNATIVES)
            for name in names:
                if (directory / name).is_dir():
                    raise UsageError(
                        f"{directory / name} is a directory, where {self.name} needs a file",
                        "remove it or put the dataset's file there",
                    )
            if not any((directory / name).is_file() for name in names):
                missing.append(" or ".join(names))
        return missing


@dataclasses.dataclass(frozen=True)
class Contract:
    package: str
    train: EntryPoint
    datasets: Mapping[str, Dataset]
    evaluate: EntryPoint | None = None

    @property
    def default_dataset(self) -> str:
        return next(iter(self.datasets))

    def dataset(self, name: str, origin: str = "the dataset option") -> Dataset:
        if name not in self.datasets:
            raise UsageError(
                f"unknown dataset {name!r} (from {origin})",
                f"use one of: {', '.join(self.datasets)} (declared in {CONTRACT_KEY}.datasets)",
            )
        return self.datasets[name]

    def entry(self, role: str) -> EntryPoint:
        found = self.train if role == "train" else self.evaluate
        if found is None:
            raise ContractError(
                f"the project declares no {role} entry point",
                f"add {CONTRACT_KEY}.{role} (a module or a command) to invoke.yaml (docs/contract.md)",
            )
        return found

    def names(self) -> set[str]:
        """What only this project's code knows: its package, entry points and datasets (the wall test
        checks that the host package names none of them)."""
        entries = [entry for entry in (self.train, self.evaluate) if entry]
        return {self.package, *(entry.shown for entry in entries), *self.datasets}

    def flags(self) -> set[str]:
        """The entry points' own flags, which the host may only take from here."""
        entries = [entry for entry in (self.train, self.evaluate) if entry]
        return {flag for entry in entries for flag in (*entry.options.values(), *entry.flags_set_by_args())}


def parse(values: Mapping[str, Any]) -> Contract:
    """The contract from invoke.yaml's `tfdock.project` mapping; a malformed part is one line."""
    _require_keys(values, {"package", "train", "datasets"}, {"evaluate"}, CONTRACT_KEY)
    package = _text(values["package"], f"{CONTRACT_KEY}.package")
    if not package.isidentifier() or keyword.iskeyword(package):
        raise ContractError(
            f"{CONTRACT_KEY}.package {package!r} is not a Python package name", "use e.g. my_model"
        )
    datasets = values["datasets"]
    if not isinstance(datasets, Mapping) or not datasets:
        raise ContractError(f"{CONTRACT_KEY}.datasets declares no dataset", "declare at least one")
    evaluate = values.get("evaluate")
    return Contract(
        package=package,
        train=_entry_point("train", values["train"]),
        evaluate=_entry_point("evaluate", evaluate) if evaluate else None,
        datasets={str(name): _dataset(str(name), spec) for name, spec in datasets.items()},
    )


def _entry_point(role: str, values: Any) -> EntryPoint:
    where = f"{CONTRACT_KEY}.{role}"
    if not isinstance(values, Mapping):
        raise ContractError(
            f"{where} must be a mapping", "give it `module:` or `command:` (docs/contract.md)"
        )
    _require_keys(values, set(), {"module", "command", "args", "options"}, where)
    if ("module" in values) == ("command" in values):
        raise ContractError(f"{where} needs exactly one of module and command", "e.g. module: my_model.train")
    if "module" in values:
        module = _text(values["module"], f"{where}.module")
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", module):
            raise ContractError(f"{where}.module {module!r} is not a module name", "e.g. my_model.train")
        command: tuple[str, ...] = ("python", "-m", module)
    else:
        command = _texts(values["command"], f"{where}.command")
    args = _texts(values.get("args", []), f"{where}.args")
    for arg in args:
        for name in re.findall(r"{(\w*)}", arg):
            if name not in PLACEHOLDERS:
                raise ContractError(
                    f"{where}.args names {{{name}}}", f"placeholders are {', '.join(PLACEHOLDERS)}"
                )
    options = values.get("options", {}) or {}
    if not isinstance(options, Mapping):
        raise ContractError(f"{where}.options must map task options to flags", "e.g. epochs: --epochs")
    _require_keys(options, set(), set(TASK_OPTIONS), f"{where}.options")
    return EntryPoint(
        role,
        command,
        args,
        {str(key): _text(flag, f"{where}.options.{key}") for key, flag in options.items()},
    )


def _dataset(name: str, values: Any) -> Dataset:
    where = f"{CONTRACT_KEY}.datasets.{name}"
    if not isinstance(values, Mapping):
        raise ContractError(f"{where} must be a mapping", "give it dir: and files: (docs/contract.md)")
    _require_keys(values, {"dir", "files"}, {"fetch", "test_dir"}, where)
    return Dataset(
        name=name,
        dir=_text(values["dir"], f"{where}.dir"),
        files=_texts(values["files"], f"{where}.files"),
        fetch=_texts(values.get("fetch", []), f"{where}.fetch"),
        test_dir=str(values.get("test_dir", "") or ""),
    )


def _require_keys(values: Mapping[str, Any], required: set[str], optional: set[str], where: str) -> None:
    from tfdock_host.settings import unknown_key_error  # one wording for every unknown key

    for key in values:
        if key not in required | optional:
            raise unknown_key_error(f"{where}.{key}", [f"{where}.{known}" for known in required | optional])
    for key in sorted(required - set(values)):
        raise ContractError(f"{where} has no {key}", "see docs/contract.md for what the contract declares")


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ContractError(f"{where} must be a non-empty string, not {value!r}", "see docs/contract.md")
    return value.strip()


def _texts(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list):
        raise ContractError(f"{where} must be a list of strings, not {value!r}", "e.g. [--flag, value]")
    return tuple(_text(item, f"{where}[{index}]") for index, item in enumerate(value))

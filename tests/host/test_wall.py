"""The wall between the two sides: the host side never loads TensorFlow or the project's package, and never
names what only the project knows (its package, modules, datasets, flags): it reads them from the contract."""

from __future__ import annotations

import json
import pkgutil
import re
import subprocess
import sys

import pytest

import tfdock_host
from tfdock_host import settings

ROOT = settings.ROOT
HOST_PACKAGE = ROOT / "src" / "tfdock_host"
TOOL = "tfdock"  # the tool's own name, which its package, labels and variables carry


def host_modules() -> list[str]:
    return sorted(f"tfdock_host.{module.name}" for module in pkgutil.iter_modules(tfdock_host.__path__))


def test_importing_every_host_module_tasks_and_noxfile_loads_neither_tensorflow_nor_the_package():
    package = settings.load().contract.package
    script = f"""
import importlib, json, runpy, sys
sys.path[:0] = [{str(ROOT / "src")!r}, {str(ROOT)!r}]
for name in {host_modules()!r}:
    importlib.import_module(name)
runpy.run_path({str(ROOT / "tasks.py")!r})
runpy.run_path({str(ROOT / "noxfile.py")!r})
print(json.dumps(sorted(sys.modules)))
"""
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    )
    assert len(loaded) > 50, "the imports did not run"
    assert {"tfdock_host.run", "invoke", "nox"} <= set(loaded)
    for forbidden in ("tensorflow", "keras", package):
        assert not [name for name in loaded if name == forbidden or name.startswith(f"{forbidden}.")]


def token(name: str) -> re.Pattern[str]:
    """NAME as a whole token: not part of a longer name, module path or flag."""
    return re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w-])")


def project_names() -> set[str]:
    names = settings.load().contract.names() - {TOOL}
    assert names, "the contract names nothing"
    return names


def argument(flag: str) -> re.Pattern[str]:
    """FLAG as a command-line argument the code builds: a string literal of its own. (Prose may name
    `invoke train --epochs`, the task's option.)"""
    return re.compile(rf"([\"']){re.escape(flag)}\1")


@pytest.mark.parametrize("path", sorted(HOST_PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_the_host_package_names_nothing_of_the_project(path):
    contract = settings.load().contract
    text = path.read_text()
    found = sorted(name for name in project_names() if token(name).search(text))
    found += sorted(flag for flag in contract.flags() if argument(flag).search(text))
    assert not found, f"{path.name} names {found}: read them from the contract (settings.contract)"
    assert not re.search(rf"^\s*(from|import) {contract.package}( |\.|$)", text, re.M)


def test_the_check_finds_what_it_looks_for():
    """The token check against text that does name the project (else the test above proves nothing)."""
    contract = settings.load().contract
    dataset, flag = contract.default_dataset, next(iter(contract.train.options.values()))
    assert token(dataset).search(f'default="{dataset}"') and argument(flag).search(f'["{flag}", "3"]')
    assert token(contract.train.shown).search(f"python -m {contract.train.shown}")
    assert not token(dataset).search(f"{dataset}_dir = 1") and not argument(flag).search(f'"{flag}-more"')

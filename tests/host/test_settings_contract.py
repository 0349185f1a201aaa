"""Settings resolved once and the declared contract: every bad key or value is one line and exit 2."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tfdock_host import contract, settings, training, workbench
from tfdock_host.errors import UsageError
from tfdock_host.gpus import GpuSpecError

ROOT = settings.ROOT


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the host side (tasks.py, invoke.yaml, the host package) to break invoke.yaml in."""
    shutil.copy(ROOT / "tasks.py", tmp_path)
    shutil.copy(ROOT / "invoke.yaml", tmp_path)
    shutil.copytree(ROOT / "src" / "tfdock_host", tmp_path / "src" / "tfdock_host")
    return tmp_path


def invoke(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in __import__("os").environ.items() if not key.startswith("INVOKE_")}
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=project,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    ("misspelt", "nearest"), [("shm-size: 4g", "tfdock.shm_size"), ("gpu: all", "tfdock.gpus")]
)
def test_a_misspelt_key_in_invoke_yaml_names_the_nearest_known_one(project, misspelt, nearest):
    yaml = project / "invoke.yaml"
    yaml.write_text(yaml.read_text().replace("  variant: cpu\n", f"  variant: cpu\n  {misspelt}\n"))
    assert_one_line(invoke(project, "train"), misspelt.split(":")[0], nearest)


def test_a_misspelt_environment_variable_names_the_nearest_known_one(project):
    result = invoke(project, "train", env={"INVOKE_TFDOCK_GPU": "all"})
    assert_one_line(result, "INVOKE_TFDOCK_GPU", "INVOKE_TFDOCK_GPUS")


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("shm_size", "lots", "tfdock.shm_size"),
        ("gpus", "device=", "--gpus"),
        ("variant", "tpu", "tfdock.variant"),
        ("dataset", "cifar10", "unknown dataset"),
        ("image", "My Model", "tfdock.image"),
        ("output_dir", " ", "tfdock.output_dir"),
        ("cpus", "0", "tfdock.cpus"),
    ],
)
def test_a_bad_value_of_each_kind_is_one_line(project, key, value, fragment):
    assert_one_line(invoke(project, "train", env={f"INVOKE_TFDOCK_{key.upper()}": value}), fragment)


def test_a_malformed_contract_is_one_line(project):
    yaml = project / "invoke.yaml"
    yaml.write_text(yaml.read_text().replace("      module: tfdock.train", "      modul: tfdock.train"))
    assert_one_line(invoke(project, "k8s", "--image", "r/x:1"), "tfdock.project.train.modul")


def test_options_apply_over_settings_in_one_place_checked_as_options():
    loaded = settings.load()
    assert loaded.apply(shm_size="8G").shm_size == "8g"
    with pytest.raises(UsageError, match="--shm-size"):
        loaded.apply(shm_size="abc")
    with pytest.raises(GpuSpecError):
        loaded.apply(gpus="0")
    assert loaded.apply(data_dir="").data_dir == loaded.data_dir  # an empty option keeps the setting


@pytest.mark.parametrize("value", ["0", "-1", "abc", "inf", "nan", "1,5"])
def test_a_cpu_quota_is_a_positive_number(value):
    with pytest.raises(UsageError, match=f"invalid --cpus '{value}'"):
        settings.load().apply(cpus=value)


def test_a_cpu_quota_becomes_the_engines_nano_cpus_and_none_means_no_limit():
    assert settings.load().apply(cpus="1.5").nano_cpus == 1_500_000_000
    assert settings.load().apply(cpus="").nano_cpus is None


def test_gpus_pick_the_gpu_variant_unless_a_variant_is_given():
    loaded = settings.load()
    assert loaded.apply(gpus="all").run_variant == "gpu"
    assert loaded.apply(gpus="all", variant="cpu").run_variant == "cpu"
    assert loaded.apply(gpus="none").run_variant == loaded.variant


def test_shell_with_gpus_opens_the_gpu_variants_dev_image(monkeypatch):
    """Issue 19, defect 3: `invoke shell --gpus all` opened the cpu image, whose TensorFlow sees no GPU."""
    wanted = []
    monkeypatch.setattr(
        workbench.image, "ensure", lambda s, variant, target: wanted.append((variant, target))
    )
    monkeypatch.setattr(workbench, "execute", lambda spec: len(spec.gpus))
    assert workbench.shell(settings.load().apply(gpus="all"), ["true"]) == 1
    assert workbench.shell(settings.load().apply(gpus="none"), ["true"]) == 0
    assert wanted == [("gpu", "dev"), ("cpu", "dev")]


DIGITS = {
    "package": "digits",
    "train": {"module": "digits.fit", "options": {"epochs": "--passes"}},
    "datasets": {"scans": {"dir": "data/scans", "files": ["images.npy|images.npy.gz", "labels.npy"]}},
}


def test_task_options_become_the_entry_points_declared_flags_and_an_undeclared_one_is_one_line():
    entry = contract.parse(DIGITS).train
    assert training.entry_options(entry, {"epochs": "3", "resume": False}, "invoke train") == [
        "--passes",
        "3",
    ]
    with pytest.raises(UsageError, match="--batch-size") as raised:
        training.entry_options(entry, {"batch_size": "64"}, "invoke train")
    assert "digits.fit" in str(raised.value) and "options" in raised.value.hint


def test_verbose_passes_the_declared_flag_and_quiet_passes_nothing():
    train = settings.load().contract.train
    assert training.entry_options(train, {"verbose": True}, "invoke train") == [train.options["verbose"]]
    assert training.entry_options(train, {"verbose": False}, "invoke train") == []


def test_a_dataset_is_present_when_each_required_file_or_its_alternative_is(tmp_path):
    scans = contract.parse(DIGITS).datasets["scans"]
    assert scans.missing(tmp_path) == ["images.npy or images.npy.gz", "labels.npy"]
    (tmp_path / "images.npy.gz").touch()
    (tmp_path / "labels.npy").touch()
    assert scans.missing(tmp_path) == []
    (tmp_path / "images.npy").mkdir()
    with pytest.raises(UsageError, match="is a directory"):
        scans.missing(tmp_path)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"package": "class"}, "not a Python package name"),
        ({"train": {"module": "a", "command": ["b"]}}, "exactly one of module and command"),
        ({"train": {"module": "a", "args": ["{data}"]}}, "{data}"),
        ({"datasets": {}}, "declares no dataset"),
        ({"datasets": {"d": {"dir": "d"}}}, "has no files"),
    ],
)
def test_malformed_contracts_are_usage_errors(change, fragment):
    with pytest.raises(UsageError, match=__import__("re").escape(fragment)):
        contract.parse({**DIGITS, **change})

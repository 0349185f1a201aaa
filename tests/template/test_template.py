"""tfdock as a copier template: `copier copy` makes a project that carries its own names and only its
example; `copier update` brings a newer tfdock and keeps the user's edits, showing conflicts.

Runs copier for real (pinned in requirements/host-test.txt), on a copy of this checkout's tracked files.
The end-to-end run of a generated project (its README's commands on the real engine) is
test_generated_project.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tfdock_host import settings

ROOT = settings.ROOT
IMPORTS_OF_THE_EXAMPLE = re.compile(r"^\s*(from|import) tfdock( |\.|$)", re.M)


def git(directory: Path, *args: str) -> str:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
    return subprocess.run(
        ["git", *identity, *args], cwd=directory, capture_output=True, text=True, check=True
    ).stdout.strip()


def copier(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "copier", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def template_repo(directory: Path) -> Path:
    """A git repo of this checkout's tracked files as they are now, committed once."""
    for name in git(ROOT, "ls-files").splitlines():
        source = ROOT / name
        if source.is_file():
            target = directory / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git(directory, "init", "-q", "-b", "main")
    git(directory, "add", "-A")
    git(directory, "commit", "-q", "-m", "tfdock")
    return directory


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return template_repo(tmp_path_factory.mktemp("template"))


def generate(template: Path, destination: Path, example: str, *extra: str) -> Path:
    result = copier(
        "copy", "--trust", "--defaults", "--data", "project_name=Digits Lab",
        "--data", "package_name=digits_lab", "--data", f"example={example}", *extra,
        str(template), str(destination),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return destination


def files(project: Path) -> list[Path]:
    return [path for path in project.rglob("*") if path.is_file() and ".git" not in path.parts]


@pytest.mark.parametrize("example", ["minimal", "cnn"])
def test_a_generated_project_carries_its_own_names_and_only_its_example(template, tmp_path, example):
    project = generate(template, tmp_path / "digits", example)

    assert sorted(path.name for path in (project / "src").iterdir()) == ["digits_lab", "tfdock_host"]
    own = [*(project / "src" / "digits_lab").rglob("*.py"), *(project / "tests").rglob("*.py")]
    assert own and not [path for path in own if re.search(r"\btfdock\b", path.read_text())]
    assert not [
        path
        for path in files(project)
        if path.suffix == ".py" and IMPORTS_OF_THE_EXAMPLE.search(path.read_text())
    ]
    config = yaml.safe_load((project / "invoke.yaml").read_text())["tfdock"]
    assert config["image"] == "digits-lab" and config["project"]["package"] == "digits_lab"
    assert config["project"]["train"]["module"] == "digits_lab.train"
    assert "COPY src/digits_lab " in (project / "docker" / "Dockerfile").read_text()
    assert "!src/digits_lab/" in (project / ".dockerignore").read_text()
    assert "image: digits-lab:latest-cpu-dev" in (project / "docker" / "compose.yaml").read_text()
    assert (
        '"name": "Digits Lab (gpu)"' in (project / ".devcontainer" / "gpu" / "devcontainer.json").read_text()
    )
    assert (project / "README.md").read_text().startswith("# Digits Lab\n")
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["example"] == example and answers["package_name"] == "digits_lab"
    for tool_only in ("copier.yml", ".copier", "examples", "tests/host", "tests/engine", "benchmarks"):
        assert not (project / tool_only).exists(), tool_only
    # Each example brings its own tests, and the other's files are gone.
    assert (project / "tests" / "container" / "test_train.py").exists() == (example == "minimal")
    assert (project / "src" / "digits_lab" / "model.py").exists() == (example == "cnn")


def test_the_minimal_trainer_stays_within_150_lines():
    assert len((ROOT / "examples/minimal/src/minimal_example/train.py").read_text().splitlines()) <= 150


@pytest.mark.parametrize("name", ["class", "2digits", "my-model", "tfdock", "tensorflow"])
def test_a_package_name_that_is_no_valid_or_free_identifier_is_refused(template, tmp_path, name):
    result = copier(
        "copy", "--trust", "--defaults", "--data", f"package_name={name}", str(template), str(tmp_path / "p")
    )
    assert result.returncode != 0 and "not a valid, non-reserved Python package name" in result.stderr
    assert not (tmp_path / "p" / "src").exists()


def test_update_brings_the_newer_tool_and_keeps_the_users_edits_and_shows_conflicts(tmp_path):
    template = template_repo(tmp_path / "template")
    old_commit = git(template, "rev-parse", "HEAD")
    project = generate(template, tmp_path / "digits", "minimal", "--vcs-ref", old_commit)
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "generated")
    model = project / "src" / "digits_lab" / "train.py"
    edited = model.read_text().replace('Conv2D(64, 3, activation="relu")', 'Conv2D(96, 3, activation="relu")')
    assert edited != model.read_text()
    model.write_text(edited)
    git(project, "commit", "-q", "-am", "a wider second conv layer")
    # The newer tfdock: tasks.py changed.
    tasks = template / "tasks.py"
    tasks.write_text(tasks.read_text().replace('"""tfdock tasks.', '"""tfdock tasks (newer).', 1))
    git(template, "commit", "-q", "-am", "newer tasks")

    result = copier("update", "--trust", "--defaults", "--vcs-ref", "HEAD", cwd=project)

    assert result.returncode == 0, result.stderr
    assert (project / "tasks.py").read_text() == tasks.read_text()
    assert model.read_text() == edited
    updated_to = yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"]
    assert git(template, "rev-parse", "HEAD").startswith(updated_to)

    # A user's edit of the same line the next tfdock changes: both kept, marked, and reported.
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "updated")
    (project / "tasks.py").write_text(tasks.read_text().replace("(newer)", "(mine)", 1))
    git(project, "commit", "-q", "-am", "my tasks")
    tasks.write_text(tasks.read_text().replace("(newer)", "(newest)", 1))
    git(template, "commit", "-q", "-am", "newest tasks")

    result = copier("update", "--trust", "--defaults", "--vcs-ref", "HEAD", cwd=project)

    assert result.returncode == 0, result.stderr
    merged = (project / "tasks.py").read_text()
    assert "<<<<<<< before updating" in merged and "(mine)" in merged and "(newest)" in merged
    # Recorded as a merge conflict: `git status` lists it, and a commit refuses until it is resolved.
    assert git(project, "diff", "--name-only", "--diff-filter=U") == "tasks.py"
    commit = subprocess.run(["git", "commit", "-qm", "x"], cwd=project, capture_output=True, check=False)
    assert commit.returncode != 0
    assert model.read_text() == edited

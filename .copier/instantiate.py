"""`copier copy` / `copier update`'s task: make the copied tfdock tree the user's project.

Run by copier in the new project's directory, with the template's checkout as --template. Everything the
tool owns was copied verbatim; this gives it the project's names (package, image, devcontainers, README)
and puts the chosen example in as the project's package. It is deterministic, so that `copier update`,
which regenerates the old version with the old task and the new one with the new, sees only real changes.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

TOOL = "tfdock"
MINIMAL_PACKAGE = "minimal_example"  # examples/minimal's placeholder name


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--template", type=Path, required=True)
    parser.add_argument("--project-name", required=True)
    parser.add_argument("--package", required=True)
    parser.add_argument("--example", choices=["cnn", "minimal"], required=True)
    parser.add_argument("--variant", choices=["cpu", "gpu"], required=True)
    args = parser.parse_args()
    project = Path.cwd()
    slug = re.sub(r"[^a-z0-9]+", "-", args.project_name.lower()).strip("-") or args.package.replace("_", "-")
    if args.example == "cnn":
        _adopt_cnn(project, args.package)
    else:
        _adopt_minimal(project, args.template / "examples" / "minimal", args.package)
    _name_the_tool_files(project, args.project_name, slug, args.package, args.variant)
    readme = (args.template / ".copier" / "README.md").read_text()
    (project / "README.md").write_text(
        readme.replace("{project_name}", args.project_name).replace("{slug}", slug)
        .replace("{package}", args.package).replace("{example}", args.example)
    )  # fmt: skip


def _rename_package(text: str, package: str) -> str:
    """The example's package name, in code and prose, as the user's: not the tool's own names
    (tfdock_host, the io.tfdock.* labels, TFDOCK_* variables, the image user)."""
    text = re.sub(rf"(?<![\w./-]){TOOL}(?=\.\w)", package, text)  # modules: tfdock.train
    text = re.sub(rf"\b(from|import) {TOOL}\b", rf"\1 {package}", text)
    text = re.sub(rf"\b{TOOL}_(?!host)", f"{package}_", text)  # tfdock_cnn
    text = text.replace(f"{TOOL.upper()}_DATA_MIRROR", f"{package.upper()}_DATA_MIRROR")  # the example's own
    return re.sub(rf"(?<![\w./-]){TOOL}(?!\w)", package, text)


def _rewrite(path: Path, change) -> None:
    if path.is_file():
        path.write_text(change(path.read_text()))


def _adopt_cnn(project: Path, package: str) -> None:
    (project / "src" / TOOL).rename(project / "src" / package)
    code = [project / "src" / package, project / "tests" / "container"]
    notebooks = list((project / "notebooks").glob("*.ipynb"))
    for path in [*(path for directory in code for path in directory.rglob("*.py")), *notebooks]:
        _rewrite(path, lambda text: _rename_package(text, package))
    _rewrite(project / "docs" / "recipe.md", lambda text: _rename_package(text, package))
    _rewrite(project / "invoke.yaml", lambda text: _contract_renamed(text, package))
    if len(package) > len(TOOL):
        _refit_lines(project, code)


def _refit_lines(project: Path, code: list[Path]) -> None:
    """A longer name can push a line past the line length: ruff formats the renamed code again (copier
    run as `uvx --with ruff copier ...`, as the README says), and a string no formatter can split gets
    the name's extra width. Without ruff, `invoke lint` names the lines to rewrap."""
    pyproject = project / "pyproject.toml"
    found = re.search(r"^line-length = (\d+)", pyproject.read_text(), re.M)
    longest = (int(found.group(1)) if found else 88) + 10
    section = f"[tool.ruff.lint.pycodestyle]\nmax-line-length = {longest}\n\n[tool.ruff.lint]\n"
    _rewrite(pyproject, lambda text: text.replace("[tool.ruff.lint]\n", section, 1))
    if importlib.util.find_spec("ruff"):
        command = [sys.executable, "-m", "ruff", "format", "--quiet", *map(str, code)]
        subprocess.run(command, cwd=project, check=True)
    else:
        print("no ruff here: `invoke lint` may find lines that the longer package name made too long")


def _contract_renamed(text: str, package: str) -> str:
    head, contract = text.split("  project:\n", 1)
    return head + "  project:\n" + _rename_package(contract, package)


def _adopt_minimal(project: Path, example: Path, package: str) -> None:
    shutil.rmtree(project / "src" / TOOL)
    shutil.rmtree(project / "tests" / "container")
    (project / "docs" / "recipe.md").unlink(missing_ok=True)
    (project / "notebooks" / "starter.ipynb").unlink(missing_ok=True)  # it explores the cnn's runs
    for source in sorted(example.rglob("*")):
        if source.is_dir() or "__pycache__" in source.parts or source.name == "contract.yaml":
            continue
        relative = Path(
            *(package if part == MINIMAL_PACKAGE else part for part in source.relative_to(example).parts)
        )
        target = project / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text().replace(MINIMAL_PACKAGE, package))
    contract = (example / "contract.yaml").read_text().replace(MINIMAL_PACKAGE, package)
    _rewrite(project / "invoke.yaml", lambda text: text.split("  project:\n", 1)[0] + contract)


def _name_the_tool_files(project: Path, name: str, slug: str, package: str, variant: str) -> None:
    _rewrite(
        project / "invoke.yaml",
        lambda text: text.replace(
            f"  image: {TOOL}\n  variant: cpu\n", f"  image: {slug}\n  variant: {variant}\n"
        ),
    )
    _rewrite(
        project / "docker" / "Dockerfile",
        lambda text: text.replace(
            f"COPY src/{TOOL} /opt/{TOOL}/src/{TOOL}", f"COPY src/{package} /opt/{TOOL}/src/{package}"
        ).replace(f'"{TOOL}.train"', f'"{package}.train"'),
    )
    _rewrite(project / ".dockerignore", lambda text: text.replace(f"!src/{TOOL}/", f"!src/{package}/"))
    for compose in ("compose.yaml", "compose.gpu.yaml"):
        _rewrite(
            project / "docker" / compose,
            lambda text: (
                text.replace(f"image: {TOOL}:", f"image: {slug}:")
                .replace(f"io.{TOOL}.project: {TOOL}", f"io.{TOOL}.project: {slug}")
                .replace(f"{TOOL}.train", f"{package}.train")
            ),
        )
    for devcontainer in (project / ".devcontainer").glob("*/devcontainer.json"):
        _rewrite(devcontainer, lambda text: text.replace(f'"name": "{TOOL} (', f'"name": "{name} ('))
    _rewrite(
        project / "pyproject.toml",
        lambda text: (
            text.replace(f'name = "{TOOL}"', f'name = "{slug}"')
            .replace(f'source = ["{TOOL}"]', f'source = ["{package}"]')
            .replace(f'packages = ["{TOOL}", "{TOOL}_host"]', f'packages = ["{package}", "{TOOL}_host"]')
        ),
    )


if __name__ == "__main__":
    main()

"""The developer loop around the image: builds with nothing changed, after a source edit, after a lock-file
edit (warm pip cache), and `invoke --list`; each against a reference measured in the same run.

    python benchmarks/dev_loop.py [--quick] [--repeat 5]

The edited files are restored afterwards (only the line added is removed). Writes
benchmarks/results/dev_loop.json. The warm edit -> test figure is benchmarks/edit_test_loop.py.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from edit_test_loop import SourceEdit, native_python  # noqa: E402

from tfdock_host import engine, image  # noqa: E402
from tfdock_host.bench import Figure, publish, repeat, timed  # noqa: E402
from tfdock_host.settings import load  # noqa: E402

INVOKE = [sys.executable, "-m", "invoke"]
BUILD_RUNTIME = [*INVOKE, "build", "--target", "runtime"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_const", dest="repeat", const=3, help="3 rounds")
    args = parser.parse_args()
    settings = load()
    rounds = args.repeat

    timed(BUILD_RUNTIME)  # warm: the image is current, so every round below measures the same thing
    request = image.BuildRequest(variant=settings.variant, target="runtime", base_image=settings.base_image)
    bare_cli_build = [engine.buildkit_cli(settings.docker_cli), *image.build_args(settings, request)]
    no_op = repeat(lambda: timed(BUILD_RUNTIME), rounds)
    bare = repeat(lambda: timed(bare_cli_build, env={"DOCKER_BUILDKIT": "1"}), rounds)

    def after_edit(path: Path, index: list[int]) -> float:
        index[0] += 1
        with SourceEdit(path, index[0]):
            return timed(BUILD_RUNTIME)

    source_rounds = [0]
    source_edit = repeat(lambda: after_edit(ROOT / "src" / "tfdock" / "__init__.py", source_rounds), rounds)
    lock_rounds = [0]
    lock_edit = repeat(lambda: after_edit(ROOT / "requirements" / "runtime-cpu.txt", lock_rounds), 1)
    timed(BUILD_RUNTIME)  # back to the image of the unedited files (all from cache)
    native_reinstall = [_native_reinstall_seconds()]

    invoke_list = repeat(lambda: timed([*INVOKE, "--list"]), rounds * 2)
    invoke_alone = repeat(lambda: timed([*INVOKE, "--version"]), rounds * 2)

    return publish(
        "dev_loop",
        [
            Figure("developer loop", "`invoke build`, nothing changed", "s", no_op, bare,
                   "the same `docker build`, bare CLI", ("value", "<=", 10.0)),
            Figure("developer loop", "`invoke build` after a source edit", "s", source_edit, no_op,
                   "`invoke build`, nothing changed", None,
                   "tasks never need this rebuild: they bind-mount src/; this is the deployable image"),
            Figure("developer loop", "`invoke build` after a lock-file edit, warm pip cache", "s", lock_edit,
                   native_reinstall, "fresh native venv from the same lock, warm pip cache"),
            Figure("developer loop", "`invoke --list`", "s", invoke_list, invoke_alone,
                   "`invoke --version` (no tasks loaded)", ("value", "<=", 0.5)),
        ],
    )  # fmt: skip


def _native_reinstall_seconds() -> float:
    """What a dependency change costs natively: a fresh venv from the same lock, pip cache already warm."""
    native_python()  # made once from these locks: the host pip cache holds every wheel
    with tempfile.TemporaryDirectory(prefix="tfdock-bench-venv-") as venv:
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        pip = [str(Path(venv) / "bin" / "python"), "-m", "pip", "install", "--quiet", "--require-hashes"]
        return timed([*pip, "--no-deps", "-r", "requirements/runtime-cpu.txt"])


if __name__ == "__main__":
    sys.exit(main())

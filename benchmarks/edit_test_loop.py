"""Warm edit-to-test overhead: `invoke test -- TEST` (container, image already built) vs pytest natively.

Each round appends a comment to a source file (as an edit would), runs the test both ways and removes the
comment again. The container must not rebuild on a source edit: a round whose output mentions building
fails the benchmark. The native side runs in a host venv with the image's own lock files (.bench/venv).

    python benchmarks/edit_test_loop.py [--repeat 5] [--test tests/container/test_data.py::...]

Writes benchmarks/results/edit_test_loop.json (its figure); exits 1 when a round rebuilt or a run failed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tfdock_host.bench import Figure, publish  # noqa: E402  (after the sys.path entry above)
from tfdock_host.settings import load  # noqa: E402

VENV = ROOT / ".bench" / "venv"
DEFAULT_TEST = "tests/container/test_data.py::test_missing_and_non_directory_data_dirs"
DEFAULT_EDITED = "src/tfdock/__init__.py"
GOAL_EXTRA_S = 1.5
# The pytest options `invoke test` adds to a selection (src/tfdock_host/suites.py): both do the same work.
SUITE_OPTIONS = ["-p", "no:cacheprovider", "-o", "testpaths=tests/container"]


def native_python() -> Path:
    """The host venv's interpreter, made on first use from the image's lock files (same pins as the image)."""
    python = VENV / "bin" / "python"
    if not python.exists():
        if sys.version_info[:2] != (3, 11):
            sys.exit(f"the lock files pin wheels for Python 3.11: run this with 3.11 (not {sys.version})")
        print(f"creating {VENV} (TensorFlow from requirements/runtime-cpu.txt; once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        requirements = ["-r", "requirements/runtime-cpu.txt", "-r", "requirements/dev.txt"]
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--require-hashes", "--no-deps", *requirements],
            cwd=ROOT,
            check=True,
        )
    return python


def timed(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    return time.perf_counter() - started, result


class SourceEdit:
    """Appends a comment to a file, then removes just that line: someone may edit the file meanwhile."""

    def __init__(self, path: Path, round_number: int) -> None:
        self.path = path
        self.line = f"# edit_test_loop round {round_number} {time.time_ns()}\n"

    def __enter__(self) -> None:
        with self.path.open("a") as file:
            file.write(self.line)

    def __exit__(self, *exc_info: object) -> None:
        text = self.path.read_text()
        self.path.write_text(text.replace(self.line, "", 1))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5, help="rounds (default: 5)")
    parser.add_argument("--quick", action="store_const", dest="repeat", const=3, help="3 rounds")
    parser.add_argument("--test", default=DEFAULT_TEST, help=f"one fast test (default: {DEFAULT_TEST})")
    parser.add_argument("--edit", default=DEFAULT_EDITED, help=f"file to touch (default: {DEFAULT_EDITED})")
    args = parser.parse_args()

    settings = load()
    python = native_python()
    base_env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    native_env = {
        **base_env,
        "PYTHONPATH": str(ROOT / "src"),
        "TFDOCK_FASHION_MNIST_DIR": settings.fashion_mnist_dir,
        "COVERAGE_FILE": str(VENV.parent / ".coverage-native"),
    }
    container_command = [sys.executable, "-m", "invoke", "test", "--", args.test]
    native_command = [str(python), "-m", "pytest", *SUITE_OPTIONS, args.test]

    # One unmeasured container round: ensures the image exists, so every measured round is warm.
    _, warmup = timed(container_command, base_env)
    if warmup.returncode != 0:
        print(warmup.stdout[-3000:], warmup.stderr[-3000:], sep="\n")
        return 1

    container_s: list[float] = []
    native_s: list[float] = []
    rebuilt_rounds: list[int] = []
    failures: list[str] = []
    for round_number in range(1, args.repeat + 1):
        with SourceEdit(ROOT / args.edit, round_number):
            seconds, result = timed(container_command, base_env)
        container_s.append(seconds)
        output = result.stdout + result.stderr
        if "building" in output.lower():
            rebuilt_rounds.append(round_number)
        if result.returncode != 0:
            failures.append(f"container round {round_number}: exit {result.returncode}\n{output[-2000:]}")
        with SourceEdit(ROOT / args.edit, round_number):
            seconds, result = timed(native_command, native_env)
        native_s.append(seconds)
        if result.returncode != 0:
            failures.append(f"native round {round_number}: exit {result.returncode}\n{result.stdout[-2000:]}")
        print(
            f"round {round_number}: container {container_s[-1]:.2f} s, native {native_s[-1]:.2f} s",
            flush=True,
        )

    figure = Figure(
        "developer loop",
        "warm edit -> test, one test",
        "s",
        container_s,
        native_s,
        "same pytest natively on the host",
        ("extra", "<=", GOAL_EXTRA_S),
        f"{args.test} after an edit of {args.edit}; rebuilt: {rebuilt_rounds or 'never'}",
    )
    print(*failures, sep="\n")
    extra_s = statistics.median(container_s) - statistics.median(native_s)
    print(f"extra {extra_s:.2f} s per edit-test cycle (goal < {GOAL_EXTRA_S} s)")
    missed = publish("edit_test_loop", [figure])
    return 1 if rebuilt_rounds or failures else missed


if __name__ == "__main__":
    sys.exit(main())

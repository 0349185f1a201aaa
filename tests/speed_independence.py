"""The engine and fault suites on a machine made much faster and much slower than this one: they must pass
either way, since their moments come from observed progress and the work after a moment is counted in steps.

    PYTHONPATH=src python tests/speed_independence.py short [--rounds 3] [-- PYTEST ARGS]
    PYTHONPATH=src python tests/speed_independence.py loaded [--rounds 3] [--hogs 2] [-- PYTEST ARGS]

short:  training much shorter than usual: TFDOCK_TEST_LIMIT_TRAIN (default 300 images) shrinks --limit-train
        in the tests that allow it (those that pick moments and check no accuracy).
loaded: the machine loaded by busy loops (--hogs, default 2: one per core here), so that every step, start-up
        and engine call is slower; they are ended when the rounds are done, on every path.

Each round runs pytest (default: tests/engine and tests/faults, without the test that stops the Docker
daemon), prints its counts and failures and keeps its whole output in a log file it names; the exit code is
non-zero when any round failed. Not a default nox session:
a round takes as long as the suites (tens of minutes loaded). See docs/reliability.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# As `nox -s engine` runs them: the emulated arm64 tests are a session of their own (`nox -s arm64`).
DEFAULT_SELECTION = [
    "tests/engine",
    "tests/faults",
    "-m",
    "not arm64",
    "-k",
    "not test_the_daemon_stopped_mid_run",
]
SHORT_LIMIT_TRAIN = "300"  # 2 steps per epoch at batch 128, 4 at 64: still a few steps to land in
BUSY_LOOP = "while True: pass"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["short", "loaded"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="busy loops (loaded)")
    parser.add_argument("--limit-train", default=SHORT_LIMIT_TRAIN, help="images (short)")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    pytest_args = argv[split + 1 :] or DEFAULT_SELECTION  # after --: what pytest runs instead

    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    if args.mode == "short":
        env["TFDOCK_TEST_LIMIT_TRAIN"] = args.limit_train
    hogs = []
    try:
        if args.mode == "loaded":
            hogs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(args.hogs)]
        what = f"{args.hogs} busy loops" if hogs else f"TFDOCK_TEST_LIMIT_TRAIN={args.limit_train}"
        logs = Path(tempfile.mkdtemp(prefix=f"speed-independence-{args.mode}-"))
        failed_rounds = 0
        for round_number in range(1, args.rounds + 1):
            started = time.monotonic()
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
            result = subprocess.run(
                [*command, *pytest_args],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            log = logs / f"round-{round_number}.log"
            log.write_text(result.stdout + result.stderr)
            summary, seconds = _summary(result.stdout), time.monotonic() - started
            where = f"round {round_number} ({args.mode}: {what})"
            print(f"{where}: {summary} ({seconds:.0f} s); {log}", flush=True)
            if result.returncode != 0:
                failed_rounds += 1
                print(_failures(result.stdout), flush=True)
        return 1 if failed_rounds else 0
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def _failures(output: str) -> str:
    """pytest's short summary: one line per failed test, with its message."""
    return "\n".join(line for line in output.splitlines() if line.startswith(("FAILED", "ERROR")))


def _summary(output: str) -> str:
    """pytest's closing counts, e.g. '40 passed, 2 skipped'."""
    counts = [line.strip("= ") for line in output.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return counts[-1] if counts else "no pytest summary"


if __name__ == "__main__":
    sys.exit(main())

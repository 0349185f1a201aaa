"""What a person sees while training: no TensorFlow start-up notices unless --verbose, and with
TFDOCK_PROGRESS=live a progress line rewritten in place; plain lines otherwise."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from containerlib import SRC

from tfdock import quiet_start, train
from tfdock.progress_line import MIN_REDRAW_INTERVAL_S, PROGRESS_ENV, ProgressLine

ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
ONEDNN_NOTICE = "oneDNN custom operations are on"
LIVE_LINE = re.compile(
    r"\repoch 1/2  \d+/\d+ steps  [\d,]+ images/s  loss \d+\.\d{4}  \d+(m\d\ds|s) left\x1b\[K"
)


def _run(module: str, args: list[str], **env_changes: str) -> subprocess.CompletedProcess:
    """`python -m module args` as `invoke train` runs it: the image's TF_CPP_MIN_LOG_LEVEL (1), nothing set
    that the test does not set."""
    env = {key: value for key, value in os.environ.items() if key != PROGRESS_ENV}
    env.update(PYTHONPATH=str(SRC), TF_CPP_MIN_LOG_LEVEL="1", **env_changes)
    result = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, env=env, timeout=900, check=False
    )
    # Decoded here: text mode's universal newlines would turn the live line's \r into \n.
    return subprocess.CompletedProcess(
        result.args, result.returncode, *map(bytes.decode, (result.stdout, result.stderr))
    )


def _small_run(fashion_dir: Path, output_dir: Path, name: str, *extra: str) -> list[str]:
    # 9 steps of 64 per epoch.
    return [
        *("--data-dir", str(fashion_dir), "--output-dir", str(output_dir), "--run-name", name),
        *("--limit-train", "640", "--limit-test", "200", "--epochs", "2", "--batch-size", "64", *extra),
    ]


@pytest.fixture(scope="module")
def default_run(fashion_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess:
    output_dir = tmp_path_factory.mktemp("outputs")
    result = _run("tfdock.train", _small_run(fashion_dir, output_dir, "quiet"))
    assert result.returncode == 0, result.stderr
    result.run_dir = output_dir / "quiet"  # type: ignore[attr-defined]
    return result


def test_training_shows_no_tensorflow_start_up_notices_by_default(
    default_run: subprocess.CompletedProcess,
) -> None:
    assert ABSL_NOTICE not in default_run.stderr, default_run.stderr
    assert ONEDNN_NOTICE not in default_run.stderr, default_run.stderr
    assert "epoch 2/2 loss" in default_run.stdout


def test_evaluating_a_run_shows_none_either(
    default_run: subprocess.CompletedProcess, fashion_dir: Path
) -> None:
    run_dir = default_run.run_dir  # type: ignore[attr-defined]
    result = _run(
        "tfdock.evaluate", ["--model", str(run_dir), "--data-dir", str(fashion_dir), "--limit-test", "200"]
    )
    assert result.returncode == 0, result.stderr
    assert ABSL_NOTICE not in result.stderr and ONEDNN_NOTICE not in result.stderr, result.stderr


def test_without_a_terminal_the_epochs_are_plain_lines(default_run: subprocess.CompletedProcess) -> None:
    assert "\r" not in default_run.stdout and "\x1b" not in default_run.stdout
    epochs = [line for line in default_run.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"]


def test_verbose_and_live_progress_show_tensorflow_and_a_line_rewritten_in_place(
    fashion_dir: Path, tmp_path: Path
) -> None:
    # Paced (FOR TESTS ONLY: --step-delay): an epoch lasts > 2 redraw intervals, for a line with a rate.
    paced = ["--step-delay", str(4 * MIN_REDRAW_INTERVAL_S / 9)]
    result = _run(
        "tfdock.train",
        _small_run(fashion_dir, tmp_path, "loud", "--verbose", *paced),
        **{PROGRESS_ENV: "live"},
    )
    assert result.returncode == 0, result.stderr
    # absl's notice on every machine; oneDNN's only where TensorFlow turns oneDNN on (CPUs with avx512 or
    # amx features: not on an avx2-only one).
    assert ABSL_NOTICE in result.stderr, result.stderr
    assert LIVE_LINE.search(result.stdout), result.stdout
    # Each epoch's plain line replaces its live line: erased first, then printed to stay.
    assert result.stdout.count("\r\x1b[Kepoch ") == 2, result.stdout
    assert "verbose" not in json.loads((tmp_path / "loud" / "config.json").read_text())  # not the run's


def test_a_notice_is_dropped_and_everything_else_written_meanwhile_stays(
    capfd: pytest.CaptureFixture,
) -> None:
    with quiet_start._stderr_held():
        os.write(2, f"{ABSL_NOTICE}\n".encode())
        os.write(
            2, b"I0000 00:00:1796171543.227592       8 port.cc:153] oneDNN custom operations are on. You\n"
        )
        os.write(2, b"E0000 00:00:1796171543.3       8 cuda_dnn.cc:8310] Unable to register cuDNN factory\n")
        print("a Python warning", file=sys.stderr)
    # (Under capfd, Python's sys.stderr bypasses file descriptor 2: the order of the two lines may differ.)
    assert sorted(capfd.readouterr().err.splitlines()) == [
        "E0000 00:00:1796171543.3       8 cuda_dnn.cc:8310] Unable to register cuDNN factory",
        "a Python warning",
    ]


def test_a_fatal_error_that_aborts_the_import_still_shows(tmp_path: Path) -> None:
    """A stand-in for TensorFlow (not TensorFlow) that aborts while it loads, as TF's AVX check does on a CPU
    without AVX: its last words reach the user, its start-up notice does not."""
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(
        "import os\n"
        f"os.write(2, b'{ABSL_NOTICE}\\n')\n"
        "os.write(2, b'F0000 cpu_feature_guard.cc:108] The TensorFlow library was compiled to use AVX')\n"
        "os.abort()\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "tfdock.train", "--help"],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{SRC}"},
        timeout=300,
        check=False,
    )
    assert result.returncode == -signal.SIGABRT, result
    assert result.stderr == b"F0000 cpu_feature_guard.cc:108] The TensorFlow library was compiled to use AVX"


def test_an_unknown_progress_mode_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv(PROGRESS_ENV, "fancy")
    assert train.main(["--epochs", "1"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and "TFDOCK_PROGRESS=fancy is not one of live, plain" in stderr


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_live_line_redraws_at_most_four_times_a_second() -> None:
    stream, clock = io.StringIO(), _Clock()
    line = ProgressLine(live=True, stream=stream, clock=clock)
    line.start_epoch(1, 1, steps=1000, images_per_step=128)
    for step in range(1, 1001):  # a step every millisecond: one second
        clock.now += 0.001
        line.update(step, loss=lambda: 0.5)
    redraws = stream.getvalue().count("\r")
    # The first step's, then one per MIN_REDRAW_INTERVAL_S (0.25 s): 4, or 5 as the float sums round.
    assert 1 / MIN_REDRAW_INTERVAL_S <= redraws <= 1 + 1 / MIN_REDRAW_INTERVAL_S, redraws
    line.print("epoch 1/1 loss 0.5")
    assert stream.getvalue().endswith("\r\x1b[Kepoch 1/1 loss 0.5\n")


def test_plain_mode_draws_nothing_and_never_reads_the_loss() -> None:
    stream = io.StringIO()
    line = ProgressLine(live=False, stream=stream)
    line.start_epoch(1, 1, steps=10, images_per_step=128)
    line.update(5, loss=lambda: pytest.fail("the loss was read"))
    line.print("epoch 1/1")
    assert stream.getvalue() == "epoch 1/1\n"

"""Every expected failure of the CLIs: exit code 2, one `error:` line on stderr, no traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from containerlib import run_module, train_args

from tfdock import cli, train


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--epochs", "0"], "--epochs must be >= 1 (got 0)"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--validation-split", "1.5"], "--validation-split must be in [0, 1)"),
        (["--dropout", "-0.1"], "--dropout must be in [0, 1)"),
        (["--cpu-devices", "0"], "--cpu-devices must be >= 1"),
        (["--epochs", "three"], "argument --epochs: invalid int value: 'three'"),
        (["--dataset", "cifar10"], "argument --dataset: invalid choice"),
        (["--profile", "7"], "argument --profile: invalid START:STOP step range value"),
        (["--no-such-option"], "unrecognized arguments: --no-such-option"),
    ],
)
def test_bad_train_options_exit_2_with_one_line(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train.main(args) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and stderr.startswith("error: ") and expected in stderr


def test_missing_data_dir_exits_2_in_one_line(tmp_path: Path, single_line_error: Callable) -> None:
    result = run_module("tfdock.train", ["--data-dir", str(tmp_path / "none"), "--output-dir", str(tmp_path)])
    assert "does not exist" in single_line_error(result)


def test_empty_data_dir_names_the_missing_files_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "data").mkdir()
    assert train.main(["--data-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / "out")]) == 2
    stderr = capsys.readouterr().err
    assert "missing train-images-idx3-ubyte[.gz]" in stderr and "invoke train --download" in stderr
    assert "python -m tfdock.data download --dataset fashion-mnist" in stderr


def test_resume_without_a_run_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert train.main(["--output-dir", str(tmp_path), "--resume"]) == 2
    assert "--resume latest: no run with a config.json" in capsys.readouterr().err


def test_resume_refuses_options_that_would_change_the_saved_run(
    trained_run: Path, fashion_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    # The shared run trained 2 epochs, flipping after 1. Asking for other epochs is refused, not dropped,
    # even for the default's 15; the saved run's own --flip-after 1 is no change.
    before = sorted(path.name for path in trained_run.rglob("*"))
    resume = ["--data-dir", str(fashion_dir), "--output-dir", str(trained_run.parent), "--resume", "shared"]
    assert train.main([*resume, "--epochs", "15", "--flip-after", "1", "--run-name", "other"]) == 2
    assert capsys.readouterr().err == (
        "error: --epochs 15, --run-name other with --resume: a resumed run keeps its saved --epochs 2, "
        "--run-name shared — drop the option to resume, or train a new run without --resume\n"
    )
    assert sorted(path.name for path in trained_run.rglob("*")) == before


def test_an_existing_run_name_is_refused_naming_the_dir_as_the_host_sees_it(
    tmp_path: Path, fashion_dir: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "taken").mkdir()
    args = [*train_args(fashion_dir, tmp_path), "--run-name", "taken"]
    refused = "already exists — use --resume or another --run-name\n"
    # Run natively: the path as it is.
    assert train.main(args) == 2
    assert capsys.readouterr().err == f"error: run dir {tmp_path / 'taken'} {refused}"
    # What `invoke train` sets: tmp_path plays the mount point, the host dir is one the container never sees.
    monkeypatch.setenv(cli.HOST_PATHS_ENV, json.dumps({str(tmp_path): "/home/me/project/outputs"}))
    assert train.main(args) == 2
    assert capsys.readouterr().err == f"error: run dir /home/me/project/outputs/taken {refused}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/outputs/run-1: cannot read", "/srv/out/run-1: cannot read"),
        ("data dir /data is not writable", "data dir /home/me/data is not writable"),
        ("/data: cannot read; /outputs full", "/home/me/data: cannot read; /srv/out full"),
        ("/database, /x/data, ./data, /data-2 and /data.gz are other paths", None),
    ],
)
def test_only_mount_points_that_start_a_path_are_named_as_the_host_sees_them(
    text: str, expected: str | None
) -> None:
    host_paths = {"/data": "/home/me/data", "/outputs": "/srv/out"}
    assert cli.as_the_host_sees(text, host_paths) == (expected or text)


def test_evaluate_and_predict_report_bad_inputs_in_one_line(
    tmp_path: Path, single_line_error: Callable
) -> None:
    line = single_line_error(run_module("tfdock.evaluate", ["--model", str(tmp_path / "missing.keras")]))
    assert "does not exist" in line
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    line = single_line_error(run_module("tfdock.predict", ["--model", str(tmp_path), str(text)]))
    assert "not an image" in line

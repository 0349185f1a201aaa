"""Which benchmarks `invoke bench` runs."""

from __future__ import annotations

import pytest

from tfdock_host import bench
from tfdock_host.errors import UsageError


def test_a_quick_run_leaves_out_the_full_default_training_unless_named() -> None:
    assert "default_training" in bench.selected(quick=False)
    assert "default_training" not in bench.selected(quick=True)
    assert bench.selected(quick=True, only=["default_training"]) == ["default_training"]
    assert set(bench.selected(quick=False, gpus=True)) == {name for name, *_ in bench.BENCHMARKS}


def test_the_gpu_row_runs_only_when_gpus_are_asked_for() -> None:
    assert "gpu_training" not in bench.selected(quick=False)
    assert "gpu_training" in bench.selected(quick=True, gpus=True)
    with pytest.raises(UsageError, match="gpu_training needs GPUs") as raised:
        bench.selected(quick=True, only=["gpu_training"])
    assert "--gpus all" in raised.value.hint


def test_an_unknown_benchmark_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match="unknown benchmark nope"):
        bench.selected(quick=True, only=["nope"])


def _figure(ours: float, **changes) -> bench.Figure:
    values = dict(group="g", metric="m", unit="s", ours=[ours], reference=[1.0], reference_name="ref")
    return bench.Figure(**{**values, "goal": ("value", "<=", 2.0), **changes})


def test_a_missed_goal_makes_the_benchmark_exit_non_zero_and_names_it(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    assert bench.publish("ok", [_figure(1.5), _figure(9.0, goal=None)]) == 0  # informative: nothing to miss
    assert bench.publish("slow", [_figure(1.5), _figure(3.0, metric="seconds")]) == 1
    assert "slow: goal missed: seconds: 3 s" in capsys.readouterr().err
    assert [figure.ours for figure in bench.read_figures("slow")] == [[1.5], [3.0]]


def test_the_report_says_which_rows_are_fresh_and_which_are_carried_over() -> None:
    about = {"machine": {"cores": 2, "memory_gib": 8, "engine": "20.10"}, "measured_at": "now", "quick": True}
    page = bench._markdown([_figure(1.0, metric="new"), _figure(1.0, metric="old", carried_over=True)], about)
    rows = {line.split(" | ")[1]: line for line in page.splitlines() if line.startswith("| g |")}
    assert rows["new [s]"].endswith("| fresh |")
    assert rows["old [s]"].endswith("| carried over from an earlier run |")

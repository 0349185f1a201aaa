"""Which benchmarks `invoke bench` runs."""

from __future__ import annotations

import pytest

from tfdock_host import bench
from tfdock_host.errors import UsageError


def test_a_quick_run_leaves_out_the_full_default_training_unless_named() -> None:
    assert "default_training" in bench.selected(quick=False)
    assert "default_training" not in bench.selected(quick=True)
    assert bench.selected(quick=True, only=["default_training"]) == ["default_training"]
    assert set(bench.selected(quick=False)) == {name for name, *_ in bench.BENCHMARKS}


def test_an_unknown_benchmark_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match="unknown benchmark nope"):
        bench.selected(quick=True, only=["nope"])

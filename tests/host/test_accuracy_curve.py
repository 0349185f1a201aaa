"""Where benchmarks/accuracy_curve.py stops training to evaluate, for recipe_search.py (four times an epoch in
the first two epochs, then at each epoch's end) and time_to_accuracy.py (four times in every epoch)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import accuracy_curve


def test_the_first_epochs_are_evaluated_four_times_and_the_later_ones_at_their_end() -> None:
    # 54,000 training images in batches of 128: 421 steps an epoch, evaluated at its quarters (105.25 steps
    # apart, rounded) and its end; never a step before the end as well (the curves before 2026-12-06 have
    # both 420 and 421).
    assert accuracy_curve.evaluation_steps(421, 4, frequent_epochs=2) == [
        [105, 210, 316, 421],
        [526, 631, 737, 842],
        [1263],
        [1684],
    ]


def test_every_epoch_is_evaluated_at_its_end_even_when_it_has_fewer_steps_than_evaluations() -> None:
    assert accuracy_curve.evaluation_steps(3, 2, frequent_epochs=2) == [[1, 2, 3], [4, 5, 6]]
    assert accuracy_curve.evaluation_steps(8, 3, frequent_epochs=0) == [[8], [16], [24]]

"""Input pipeline vs train step: batches/s the tf.data pipeline delivers on its own, against the batches/s
the default model's train step consumes, on real Fashion-MNIST. Goal: the pipeline at least 10x faster,
so it is never the bottleneck.

    python benchmarks/input_pipeline.py [--quick] [--data-dir DIR]

Writes benchmarks/results/input_pipeline.json (runs in the image: it needs TensorFlow); exits 1 when the
goal is missed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

import train_step_bench as bench

WARMUP_BATCHES = 5
GOAL_RATIO = 10.0


def batches_per_second(batches: Iterable[object], count: int, consume=lambda batch: None) -> float:
    iterator = iter(batches)
    for _ in range(WARMUP_BATCHES):  # tracing, autotuning and the first prefetch are not the steady state
        consume(next(iterator))
    started = time.perf_counter()
    for _ in range(count):
        consume(next(iterator))
    return count / (time.perf_counter() - started)


def main() -> int:
    args = bench.parser(__doc__.splitlines()[0], rounds=3, quick_rounds=2).parse_args()
    run = bench.setup(args.data_dir, mirrored=True)
    trainer = run.trainer()
    steps = run.steps_per_epoch - WARMUP_BATCHES

    delivered, consumed = [], []
    for epoch in range(args.rounds):
        delivered.append(batches_per_second(run.epochs(epoch), steps))
        consumed.append(
            batches_per_second(trainer.distribute(run.epochs(epoch)), steps // 4, trainer.train_step)
        )
        print(
            f"round {epoch}: pipeline {delivered[-1]:.0f} batches/s, train step {consumed[-1]:.1f} batches/s"
        )

    figure = {
        "group": "input pipeline",
        "metric": f"batches/s (batch {run.env.global_batch_size}) delivered by tf.data alone",
        "unit": "batches/s",
        "ours": delivered,
        "reference": consumed,
        "reference_name": "consumed by the default model's train step",
        "goal": ["ratio", ">=", GOAL_RATIO],
        "note": "the pipeline must never be the bottleneck (measured with mirroring on, its heavier path)",
    }
    return bench.publish("input_pipeline", [figure])


if __name__ == "__main__":
    sys.exit(main())

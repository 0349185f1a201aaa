"""Input pipeline vs train step: batches/s the tf.data pipeline delivers on its own, against the batches/s
the default model's train step consumes, on real Fashion-MNIST. Goal: the pipeline at least 10x faster,
so it is never the bottleneck.

    python benchmarks/input_pipeline.py [--quick] [--data-dir DIR]

Writes benchmarks/results/input_pipeline.json (runs in the image: it needs TensorFlow); exits 1 when the
goal is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from tfdock import data, pipeline, runtime
from tfdock import model as cnn
from tfdock.config import TrainConfig
from tfdock.files import write_text_atomically
from tfdock.optimizer import make_optimizer
from tfdock.trainer import Trainer

RESULTS = Path(__file__).resolve().parent / "results"
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = os.environ.get("TFDOCK_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
    parser.add_argument("--data-dir", type=Path, default=Path(default_dir))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_const", dest="repeat", const=2, help="2 rounds")
    args = parser.parse_args()

    config = TrainConfig(data_dir=str(args.data_dir))
    env = runtime.setup(config)
    splits = data.load(args.data_dir, "fashion-mnist")
    # With the recipe's mirroring on from the first epoch: the pipeline's heavier path.
    flip_from_epoch = 0 if config.flips_images else None
    epochs = pipeline.training_batches(
        splits.train_images, splits.train_labels, env.global_batch_size, 0, flip_from_epoch
    )
    steps = len(splits.train_images) // env.global_batch_size - WARMUP_BATCHES
    with env.strategy.scope():
        trainer = Trainer(cnn.build(config), make_optimizer(config, env, steps), env)

    delivered, consumed = [], []
    for epoch in range(args.repeat):
        delivered.append(batches_per_second(epochs(epoch), steps))
        consumed.append(batches_per_second(trainer.distribute(epochs(epoch)), steps // 4, trainer.train_step))
        print(
            f"round {epoch}: pipeline {delivered[-1]:.0f} batches/s, train step {consumed[-1]:.1f} batches/s"
        )

    figure = {
        "group": "input pipeline",
        "metric": f"batches/s (batch {env.global_batch_size}) delivered by tf.data alone",
        "unit": "batches/s",
        "ours": delivered,
        "reference": consumed,
        "reference_name": "consumed by the default model's train step",
        "goal": ["ratio", ">=", GOAL_RATIO],
        "note": "the pipeline must never be the bottleneck (measured with mirroring on, its heavier path)",
    }
    write_text_atomically(RESULTS / "input_pipeline.json", json.dumps([figure], indent=2) + "\n")
    ratio = statistics.median(delivered) / statistics.median(consumed)
    print(f"pipeline / train step batches/s: {ratio:.1f} (goal >= {GOAL_RATIO:g})")
    return 0 if ratio >= GOAL_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())

"""One candidate recipe, trained as `python -m tfdock.train` trains it, scored on the test set as it goes.

The measurements behind docs/recipe.md: the trainer's own pipeline, model, optimizer and steps, on the real
files, with test accuracy of the model alone four times per epoch in the first two epochs (for time to 90%)
and after every epoch, and of the model as exported (its mean over mirror and shifted views) after every
epoch (the loop: benchmarks/accuracy_curve.py, shared with time_to_accuracy.py). Accuracy per epoch does not
depend on the machine or its load (the run is deterministic); images/s does, so compare speed within one
quiet run.

    invoke shell -- python benchmarks/recipe_search.py --name NAME [--results FILE] -- [tfdock.train options]

Prints one JSON line, prefixed "RESULT ", and appends it to --results (default: benchmarks/results/
recipes.jsonl). The data dir is $TFDOCK_FASHION_MNIST_DIR, else /data (the dev shell's mount).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import accuracy_curve

from tfdock import model as cnn
from tfdock import pipeline, runtime
from tfdock.config import parse_args
from tfdock.optimizer import make_optimizer
from tfdock.train import EVAL_BATCH_SIZE, load_arrays
from tfdock.trainer import Trainer

FREQUENT_EPOCHS = 2  # evaluated accuracy_curve.EVALS_PER_EPOCH times, for time to 90%; later ones once


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results" / "recipes.jsonl")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    data_dir = os.environ.get("TFDOCK_FASHION_MNIST_DIR", "/data")
    config = parse_args(["--data-dir", data_dir, *argv[split + 1 :]])

    env = runtime.setup(config)
    (train_images, train_labels), _, (test_images, test_labels) = load_arrays(config)
    batches_for_epoch = pipeline.training_batches(
        train_images, train_labels, env.global_batch_size, config.seed, config.augmentation
    )
    test = pipeline.evaluation_batches(test_images, test_labels, EVAL_BATCH_SIZE)
    steps_per_epoch = len(train_images) // env.global_batch_size
    with env.strategy.scope():
        model = cnn.build(config)
        optimizer = make_optimizer(config, env, steps_per_epoch)
    trainer = Trainer(model, optimizer, env, config.label_smoothing)

    curve = accuracy_curve.train(
        args.name,
        trainer,
        batches_for_epoch,
        test,
        steps_per_epoch,
        config.epochs,
        frequent_epochs=FREQUENT_EPOCHS,
        steps_per_call=config.steps_per_call,
        exported_accuracy=accuracy_curve.exported_accuracy(model, config, test_images, test_labels),
        exported_every_epoch=True,
    )
    reached = curve.first_at()
    result = {
        "name": args.name,
        "options": argv[split + 1 :],
        "final_exported_accuracy": curve.epochs[-1]["exported"],
        "training_seconds": curve.seconds,
        "images_per_second": curve.steps * env.global_batch_size / curve.seconds,
        "epoch_at_90": reached["epoch"] if reached else None,
        "seconds_to_90": reached["seconds"] if reached else None,
        "parameters": model.count_params(),
        "per_epoch": curve.epochs,
        "curve": curve.points,
        "load_average": os.getloadavg(),
    }
    print("RESULT " + json.dumps(result), flush=True)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with args.results.open("a") as results:
        results.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Several training steps per call into TensorFlow (`--steps-per-call N`) against one step per call (today's
loop), in the same run on real Fashion-MNIST with the default model: images/s of the train step alone.

    python benchmarks/steps_per_call.py [--quick] [--data-dir DIR] [--steps-per-call N]

A small CNN is launch-bound on a GPU: one Python round trip per step costs as much as the step. On a CPU
the gain is smaller; the GPU figure is left to the first GPU host. Rounds alternate one step and N steps
per call, so that a machine whose speed drifts (shared cores) shifts both alike; the median round counts.
Writes benchmarks/results/steps_per_call.json (runs in the image: it needs TensorFlow).
"""

from __future__ import annotations

import sys

import train_step_bench as bench

GOAL_RATIO = 1.0  # several steps per call must never be slower than one
MEASURED_STEPS = 96  # a multiple of every N this is run with, so each round runs the same steps


def main() -> int:
    parser = bench.parser(__doc__.splitlines()[0], rounds=5, quick_rounds=3)
    parser.add_argument("--steps-per-call", type=int, default=16)
    args = parser.parse_args()

    run = bench.setup(args.data_dir)
    trainer = run.trainer()
    one: list[float] = []
    several: list[float] = []
    for round_ in range(args.rounds):
        for steps_per_call, figures in ((1, one), (args.steps_per_call, several)):
            batches = trainer.distribute(run.epochs(round_))
            batch = run.env.global_batch_size
            figures.append(bench.images_per_second(trainer, batches, steps_per_call, MEASURED_STEPS, batch))
        print(f"round {round_}: 1 step/call {one[-1]:.0f} images/s, {args.steps_per_call} {several[-1]:.0f}")

    figure = {
        "group": "train step",
        "metric": f"images/s of the train step, {args.steps_per_call} steps per call ({run.env.devices[0]})",
        "unit": "images/s",
        "ours": several,
        "reference": one,
        "reference_name": "one step per call (the default loop)",
        "goal": ["ratio", ">=", GOAL_RATIO],
        "note": "same weights either way; expected to gain more on a GPU, where a step is launch-bound "
        "(not measured here)",
    }
    return bench.publish("steps_per_call", [figure])


if __name__ == "__main__":
    sys.exit(main())

"""The whole train step compiled by XLA (`--jit-compile`) against today's loop, in the same run on real
Fashion-MNIST with the default model: images/s of the train step alone.

    python benchmarks/whole_step_xla.py [--quick] [--data-dir DIR]

With one replica, `--jit-compile` puts the whole step under XLA: forward, gradients, the optimizer's apply
and the metric sums (Trainer.compiles_whole_step says so; this script checks it). XLA needs
--no-deterministic (it has no deterministic max-pool gradient), and op determinism is one switch per
process, so both rows here run without it: the ratio is XLA's alone. Rounds alternate the two; the median
round counts. On a CPU this is informative (the XLA CPU backend does not fuse the convolutions the way
oneDNN runs them); the figure that matters is a GPU's, left to the first GPU host.
Writes benchmarks/results/whole_step_xla.json (runs in the image: it needs TensorFlow).
"""

from __future__ import annotations

import dataclasses
import sys

import train_step_bench as bench

MEASURED_STEPS = 96


def main() -> int:
    args = bench.parser(__doc__.splitlines()[0], rounds=5, quick_rounds=3).parse_args()
    run = bench.setup(args.data_dir, deterministic=False)
    compiled = run.trainer(dataclasses.replace(run.env, jit_compile=True))
    if not compiled.compiles_whole_step:
        print("--jit-compile did not compile the whole step", file=sys.stderr)
        return 1
    today = run.trainer()

    xla: list[float] = []
    loop: list[float] = []
    batch = run.env.global_batch_size
    for round_ in range(args.rounds):
        for trainer, figures in ((today, loop), (compiled, xla)):
            batches = trainer.distribute(run.epochs(round_))
            figures.append(bench.images_per_second(trainer, batches, 1, MEASURED_STEPS, batch))
        print(f"round {round_}: today's loop {loop[-1]:.0f} images/s, whole step under XLA {xla[-1]:.0f}")

    figure = {
        "group": "train step",
        "metric": f"images/s of the train step, whole step under XLA ({run.env.devices[0]})",
        "unit": "images/s",
        "ours": xla,
        "reference": loop,
        "reference_name": "today's loop (no XLA; both --no-deterministic)",
        "goal": None,
        "note": "informative on CPU; the goal (>= 1.0x) is for a GPU host, where a step is launch-bound",
    }
    return bench.publish("whole_step_xla", [figure])


if __name__ == "__main__":
    sys.exit(main())

"""Container overhead: the same training natively in a host venv with the same pinned TensorFlow and
through `invoke train` in the container, in ABBA order (benchmarks/paired_training.py); images/s of each
run's last epoch, and the spread of the pairs' ratios.

    python benchmarks/container_overhead.py [--quick] [--pairs 6]

Writes benchmarks/results/container_overhead.json.
"""

from __future__ import annotations

import sys

import paired_training

if __name__ == "__main__":
    sys.exit(
        paired_training.main(
            "container_overhead",
            __doc__,
            group="container overhead",
            metric="training throughput, same run natively and in the container",
            reference_name="native host venv, same lock",
            goal_ratio=0.98,
            options=[],
            prefix=[],
            limit_train=12000,
        )
    )

"""TensorFlow under a CPU quota: `invoke train --cpus 1` against the same training natively pinned to one
core (`taskset -c 0`), in ABBA order (benchmarks/paired_training.py). A trainer that sized its thread pools
from the host's cores would run more threads than its quota holds and be throttled (tensorflow issue
17206); the trainer sizes them from the container's quota.

    python benchmarks/cpu_quota.py [--quick] [--pairs 6]

Writes benchmarks/results/cpu_quota.json.
"""

from __future__ import annotations

import shutil
import sys

import paired_training

if __name__ == "__main__":
    if not shutil.which("taskset"):
        sys.exit("cpu_quota: taskset (util-linux) is needed to pin the native run to one core")
    sys.exit(
        paired_training.main(
            "cpu_quota",
            __doc__,
            group="cpu quota",
            metric="training throughput under `invoke train --cpus 1`",
            reference_name="native host venv pinned to one core (taskset -c 0)",
            goal_ratio=0.95,
            options=["--cpus", "1"],
            prefix=["taskset", "-c", "0"],
            limit_train=6000,
        )
    )

"""TensorFlow's thread pools sized from the container's CPU quota (cgroup v2 cpu.max, v1 cpu.cfs_*), read
from real files in both formats; and a fresh trainer process whose pools and summary follow them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from containerlib import SRC

from tfdock import runtime


def _cgroup_v2(root: Path, cpu_max: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(f"{cpu_max}\n")
    return root


def _cgroup_v1(root: Path, quota_us: int, period_us: int = 100000, controller: str = "cpu") -> Path:
    directory = root / controller
    directory.mkdir(parents=True)
    (directory / "cpu.cfs_quota_us").write_text(f"{quota_us}\n")
    (directory / "cpu.cfs_period_us").write_text(f"{period_us}\n")
    return root


def test_cgroup_v2_quota_and_no_quota(tmp_path: Path) -> None:
    assert runtime.cpu_quota(_cgroup_v2(tmp_path / "a", "150000 100000")) == 1.5
    assert runtime.cpu_quota(_cgroup_v2(tmp_path / "b", "max 100000")) is None


def test_cgroup_v1_quota_and_no_quota(tmp_path: Path) -> None:
    assert runtime.cpu_quota(_cgroup_v1(tmp_path / "a", 50000)) == 0.5
    assert runtime.cpu_quota(_cgroup_v1(tmp_path / "b", 200000, 50000, controller="cpu,cpuacct")) == 4.0
    assert runtime.cpu_quota(_cgroup_v1(tmp_path / "c", -1)) is None


def test_no_cgroup_files_or_unreadable_ones_mean_no_quota(tmp_path: Path) -> None:
    assert runtime.cpu_quota(tmp_path) is None
    assert runtime.cpu_quota(_cgroup_v2(tmp_path / "garbled", "lots")) is None


@pytest.mark.parametrize(
    ("quota", "cores", "threads"), [(None, 8, None), (0.5, 8, 1), (1.0, 8, 1), (1.5, 8, 2), (6.0, 2, 2)]
)
def test_threads_are_the_quota_rounded_up_within_the_cores(
    quota: float | None, cores: int, threads: int | None
) -> None:
    assert runtime.threads_for_quota(quota, cores) == threads


_SETUP_AND_REPORT = """
import json, sys
from pathlib import Path
import tensorflow as tf
from tfdock import runtime
from tfdock.config import TrainConfig
env = runtime.setup(TrainConfig(), Path(sys.argv[1]))
print(json.dumps({
    "summary": env.summary(),
    "intra": tf.config.threading.get_intra_op_parallelism_threads(),
    "inter": tf.config.threading.get_inter_op_parallelism_threads(),
    "value": float(tf.reduce_sum(tf.ones([4, 4]))),
}))
"""


def _setup_in_a_fresh_process(cgroup_root: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", _SETUP_AND_REPORT, str(cgroup_root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_quota_sizes_both_pools_before_the_first_op_and_the_summary_says_so(tmp_path: Path) -> None:
    report = _setup_in_a_fresh_process(_cgroup_v1(tmp_path / "one", 100000))
    assert report["intra"] == report["inter"] == 1 and report["value"] == 16.0
    assert "| threads: 1 thread (CPU quota 1) |" in str(report["summary"])


def test_without_a_quota_tensorflow_keeps_its_own_sizing(tmp_path: Path) -> None:
    report = _setup_in_a_fresh_process(_cgroup_v2(tmp_path / "none", "max 100000"))
    assert report["intra"] == report["inter"] == 0  # 0: TensorFlow picks
    assert "| threads: TensorFlow's default (no CPU quota) |" in str(report["summary"])

"""Ctrl-C (SIGINT) and `kill` (SIGTERM) to a task at a random moment: exit 130/143, nothing left behind."""

from __future__ import annotations

import signal
import time

import pytest
from faultlib import containers_mounting, interrupt, start_invoke, train_args

from tfdock_host import run

pytestmark = pytest.mark.faults

# Before the container exists (settings, image checks), while it starts, and while it works.
SIGNAL_DELAY_S = (0.5, 12.0)


def task_command(task: str, fashion_mnist, scratch) -> list[str]:
    if task == "train":
        return train_args(fashion_mnist, scratch, "--epochs", "3")
    if task == "test":
        return ["test", "--", "-q"]
    return ["shell", "--", "sleep", "60"]


def dangling_volumes(client) -> set[str]:
    return {volume.id for volume in client.volumes.list(filters={"dangling": True})}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("task", ["train", "test", "shell"])
def test_a_signal_at_a_random_moment_stops_the_task_and_leaves_nothing(
    client, fashion_mnist, runtime_image, dev_image, rng, scratch, tally, task, signum
):
    volumes_before = dangling_volumes(client)
    # scratch is mounted by every task (as outputs or reports): that is how this run's containers are found.
    env = {
        "INVOKE_TFDOCK_OUTPUT_DIR": str(scratch),
        "INVOKE_TFDOCK_REPORTS_DIR": str(scratch),
        "INVOKE_TFDOCK_DATA_DIR": str(fashion_mnist),
    }
    process = start_invoke(*task_command(task, fashion_mnist, scratch), env=env)
    delay = rng.uniform(*SIGNAL_DELAY_S)
    time.sleep(delay)
    seen = containers_mounting(client, scratch)
    status, stderr = interrupt(process, signum)
    tally.faults_injected += 1
    print(f"{task}: {signal.Signals(signum).name} after {delay:.1f} s, container running: {bool(seen)}")

    assert status == 128 + signum, f"exit {status} after {delay:.1f} s: {stderr[-1500:]}"
    left = containers_mounting(client, scratch)
    tally.containers_left += len(left)
    assert left == [], f"left after {delay:.1f} s: {[container.name for container in left]}"
    networks = client.networks.list(filters={"label": f"{run.PROJECT_LABEL}=tfdock"})
    assert not {network.name for network in networks} & {container.name for container in seen}
    assert dangling_volumes(client) <= volumes_before

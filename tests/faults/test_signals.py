"""Ctrl-C (SIGINT) and `kill` (SIGTERM) to a task at a moment chosen from what it was seen doing: before its
container exists, or while the container works. Exit 130/143, nothing left behind."""

from __future__ import annotations

import signal
import time

import pytest
from enginelib import (
    containers_mounting,
    project_networks,
    start_invoke,
    step_delay_for,
    still_there,
    wait_for,
    wait_until_it_reaches_the_engine,
)
from faultlib import STEPS_PER_EPOCH, interrupt, paced, train_args

pytestmark = pytest.mark.faults

TRAIN_EPOCHS = 4
# Epochs 2..TRAIN_EPOCHS, every step followed by the trainer's --step-delay, last at least this long.
TRAIN_AFTER_THE_MOMENT_S = 4.0
TRAIN_STEP_DELAY_S = step_delay_for(TRAIN_AFTER_THE_MOMENT_S, (TRAIN_EPOCHS - 1) * STEPS_PER_EPOCH)
# "Before": once the task has connected to the engine, to check its images; the test checks that no
# container of it existed when the signal went.
# "While it works": a random moment this long at most after the work was seen under way, shorter than what
# is left of it by construction: `sleep 60`; the container suite (minutes); the paced epochs of training.
WHILE_IT_WORKS_S = {
    "train": TRAIN_AFTER_THE_MOMENT_S / 2,
    "test": 2.0,
    "shell": 5.0,
}


def task_command(task: str, fashion_mnist, scratch) -> list[str]:
    if task == "train":
        return train_args(
            fashion_mnist, scratch, "--epochs", str(TRAIN_EPOCHS), trainer=paced(TRAIN_STEP_DELAY_S)
        )
    if task == "test":
        return ["test", "--", "-q"]
    return ["shell", "--", "sleep", "60"]


def work_under_way(client, task: str, scratch):
    """The moment training (its first checkpoint listed) or the task's container (running) is under way."""
    if task == "train":
        index = scratch / "latest" / "checkpoints" / "checkpoint"
        return index.is_file() and 'model_checkpoint_path: "ckpt-' in index.read_text()
    return containers_mounting(client, scratch, status="running")


def dangling_volumes(client) -> set[str]:
    return {volume.id for volume in client.volumes.list(filters={"dangling": True})}


@pytest.mark.parametrize("moment", ["before the container exists", "while it works"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("task", ["train", "test", "shell"])
def test_a_signal_at_a_random_moment_stops_the_task_and_leaves_nothing(
    client, fashion_mnist, runtime_image, dev_image, rng, scratch, tally, task, signum, moment
):
    volumes_before, networks_before = dangling_volumes(client), project_networks(client)
    # scratch is mounted by every task (as outputs or reports): that is how this run's containers are found.
    env = {
        "INVOKE_TFDOCK_OUTPUT_DIR": str(scratch),
        "INVOKE_TFDOCK_REPORTS_DIR": str(scratch),
        "INVOKE_TFDOCK_DATA_DIR": str(fashion_mnist),
    }
    if moment == "while it works":
        process = start_invoke(*task_command(task, fashion_mnist, scratch), env=env)
        wait_for(lambda: work_under_way(client, task, scratch), f"{task} under way", process=process)
        delay = rng.uniform(0, WHILE_IT_WORKS_S[task])
        time.sleep(delay)
    else:
        process = start_invoke(*task_command(task, fashion_mnist, scratch), env=env)
        wait_until_it_reaches_the_engine(process)
        delay = 0.0
    existing = containers_mounting(client, scratch)
    status, stderr = interrupt(process, signum)
    tally.faults_injected += 1
    name = signal.Signals(signum).name
    seen = [(container.name, container.status) for container in existing]
    print(f"{task}: {name} {delay:.2f} s after the moment {moment!r}; containers then: {seen}")
    if moment == "while it works":
        assert "running" in dict(seen).values(), f"{task} ended before the {name}: {moment!r} was missed"
    else:
        assert not seen, f"{task}'s container existed before the {name}: {moment!r} was missed"

    assert status == 128 + signum, f"exit {status}, {name} {moment}: {stderr[-1500:]}"
    left = containers_mounting(client, scratch)
    tally.containers_left += len(left)
    assert left == [], f"left after {name} {moment}: {[container.name for container in left]}"
    # None of the project's networks made meanwhile stays (one of a concurrent run goes when it ends).
    assert still_there(client, project_networks(client) - networks_before, kind="networks") == []
    assert dangling_volumes(client) <= volumes_before

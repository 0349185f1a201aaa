"""Crashes mid-training: the container SIGKILLed, the Docker daemon stopped. `invoke train --resume` continues
from the last checkpoint, and every file a run kept loads."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from enginelib import ROOT, containers_mounting, invoke, start_invoke, step_delay_for, wait_for
from faultlib import STEPS_PER_EPOCH, error_lines, exit_status, paced, train_args

from tfdock_host import run

pytestmark = pytest.mark.faults

KILL_ROUNDS = 5
EPOCHS_PER_RUN = 2
# A kill lands at a moment chosen from the run's progress, so the rounds cover the first epoch (after the
# trainer wrote config.json), the first checkpoint's metrics write and the second epoch, and (once the last
# epoch's metrics are written) the test evaluation and export.
KILL_AFTER_CHECKPOINT = (0, 1, 2)
# After config.json or ckpt-N (N < last), a whole epoch of steps is still ahead, each followed by the
# trainer's --step-delay, so that the epoch lasts at least 2 s: a kill within half of that (plus the poll's
# latency) lands before the next checkpoint on any machine.
KILL_STEP_DELAY_S = step_delay_for(2.0, STEPS_PER_EPOCH)
KILL_WINDOW_S = STEPS_PER_EPOCH * KILL_STEP_DELAY_S / 2
# Progress is polled this often. After the last epoch's metrics are written, only the test evaluation and
# export are left (not paced by steps): that kill goes as soon as they are seen.
PROGRESS_POLL_S = 0.05
# The daemon-stop case: dockerd may take this long to stop; the run's work after its first checkpoint lasts
# longer by construction (epochs x steps x DAEMON_STEP_DELAY_S), so it cannot finish during the shutdown.
DOCKERD_STOP_TIMEOUT_S = 90
DAEMON_STEP_DELAY_S = 2.0
RESUMED_FROM = re.compile(r"resumed \S+ from ckpt-(\d+)")
DOCKERD_PIDFILE = Path("/var/run/docker.pid")
CHECKER = Path(__file__).with_name("run_files_check.py")


def latest_run(outputs: Path) -> Path | None:
    return (outputs / "latest").resolve() if (outputs / "latest" / "config.json").is_file() else None


def last_listed_checkpoint(run_dir: Path) -> int:
    """The checkpoint --resume restores: the newest one the index file lists (0: none yet)."""
    index = run_dir / "checkpoints" / "checkpoint"
    found = (
        re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', index.read_text(), re.M)
        if index.exists()
        else None
    )
    return int(found.group(1)) if found else 0


def epochs_recorded(run_dir: Path) -> int:
    """The epochs metrics.json has recorded (written atomically after each epoch's checkpoint)."""
    metrics = run_dir / "metrics.json"
    return json.loads(metrics.read_text())["epochs_completed"] if metrics.is_file() else 0


def resume(fashion_mnist: Path, outputs: Path):
    result = invoke("train", "--data-dir", str(fashion_mnist), "--output-dir", str(outputs), "--resume")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    started_from = RESUMED_FROM.search(result.stdout)
    return int(started_from.group(1)) if started_from else 0


def assert_complete(run_dir: Path, epochs: int) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "complete", metrics["status"]
    assert metrics["epochs_completed"] == epochs
    assert [entry["epoch"] for entry in metrics["history"]] == list(range(1, epochs + 1))


def load_every_kept_file(client, image: str, runs_dir: Path) -> list[dict]:
    """run_files_check.py in the runtime image over each run dir under runs_dir; raises if a file is torn."""
    from docker.types import Mount

    output = client.containers.run(
        image,
        ["python", "/checks/run_files_check.py", "/runs"],
        mounts=[
            Mount("/runs", str(runs_dir), type="bind", read_only=True),
            Mount("/checks", str(CHECKER.parent), type="bind", read_only=True),
        ],
        environment={"HOME": "/tmp", "TF_CPP_MIN_LOG_LEVEL": "2"},
        labels={run.PROJECT_LABEL: "tfdock", run.TASK_LABEL: "faults-check"},
        network_mode="none",
        remove=True,
    )
    return [json.loads(line) for line in output.decode().splitlines() if line.startswith("{")]


def test_sigkill_at_random_moments_then_resume_finishes_with_nothing_half_written(
    client, fashion_mnist, runtime_image, rng, scratch, tally
):
    kept_after_kills = scratch / "kept-after-kills"
    kept_after_kills.mkdir()
    triggers = [KILL_AFTER_CHECKPOINT[n % len(KILL_AFTER_CHECKPOINT)] for n in range(KILL_ROUNDS)]
    rng.shuffle(triggers)
    for round_number, trigger in enumerate(triggers, start=1):
        outputs = scratch / f"outputs-{round_number}"
        epochs = ("--epochs", str(EPOCHS_PER_RUN))
        process = start_invoke(*train_args(fashion_mnist, outputs, *epochs, trainer=paced(KILL_STEP_DELAY_S)))
        last = trigger == EPOCHS_PER_RUN
        reached = epochs_recorded if last else last_listed_checkpoint
        moment = f"epoch {trigger}'s metrics" if last else f"ckpt-{trigger}"
        run_dir = wait_for(
            lambda outputs=outputs, trigger=trigger, reached=reached: (
                (run_dir := latest_run(outputs)) and reached(run_dir) >= trigger and run_dir
            ),
            moment,
            process=process,
            every=PROGRESS_POLL_S,
        )
        delay = 0.0 if last else rng.uniform(0, KILL_WINDOW_S)
        time.sleep(delay)
        running = containers_mounting(client, outputs, status="running")
        assert running, (
            f"round {round_number}: the run ended before the kill {delay:.2f} s after {moment}: "
            + (
                f"its test evaluation and export took under {PROGRESS_POLL_S} s"
                if last
                else "a whole epoch of paced steps was still ahead: is --step-delay ignored?"
            )
        )
        running[0].kill()  # SIGKILL: no handler, no cleanup, no final write
        process.communicate(timeout=60)
        tally.faults_injected += 1
        assert exit_status(process.returncode) == 128 + signal.SIGKILL

        kept = kept_after_kills / f"round-{round_number}"
        shutil.copytree(run_dir, kept, symlinks=True)
        checkpoint = last_listed_checkpoint(kept)
        print(f"round {round_number}: SIGKILL {delay:.2f} s after {moment}, index lists ckpt-{checkpoint}")

        assert resume(fashion_mnist, outputs) == checkpoint
        tally.runs_resumed += 1
        assert_complete(run_dir, EPOCHS_PER_RUN)
        tally.containers_left += len(containers_mounting(client, outputs))
        assert containers_mounting(client, outputs) == []

    checked = load_every_kept_file(client, runtime_image, kept_after_kills)
    print("\n".join(json.dumps(result) for result in checked))
    assert [result["run"] for result in checked] == [f"round-{n}" for n in range(1, KILL_ROUNDS + 1)]
    assert all("config.json" in result for result in checked), checked


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@contextlib.contextmanager
def daemon_stopped():
    """dockerd stopped as a service manager would (SIGTERM); ALWAYS started again: other runs share it."""
    try:
        pid = int(DOCKERD_PIDFILE.read_text())
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not _running(pid), "dockerd to exit", timeout=DOCKERD_STOP_TIMEOUT_S)
        yield
    finally:
        subprocess.run(["bash", str(ROOT / ".ci" / "provision-engine")], check=True, capture_output=True)


def test_the_daemon_stopped_mid_run_is_one_line_and_resume_loses_at_most_the_current_epoch(
    client, fashion_mnist, runtime_image, scratch, tally
):
    epoch_s = STEPS_PER_EPOCH * DAEMON_STEP_DELAY_S
    epochs = 1 + math.ceil(1.3 * DOCKERD_STOP_TIMEOUT_S / epoch_s)  # what follows ckpt-1 outlasts dockerd
    outputs = scratch / "outputs"
    trainer = paced(DAEMON_STEP_DELAY_S)
    process = start_invoke(*train_args(fashion_mnist, outputs, "--epochs", str(epochs), trainer=trainer))
    run_dir = wait_for(
        lambda: (run := latest_run(outputs)) and last_listed_checkpoint(run) >= 1 and run,
        "the first epoch's checkpoint",
        process=process,
    )
    with daemon_stopped():
        _, stderr = process.communicate(timeout=120)
        tally.faults_injected += 1
    assert process.returncode == 1, stderr[-3000:]  # docs/reliability.md: an engine failure exits 1
    assert "Traceback" not in stderr, stderr[-3000:]
    [reported] = error_lines(stderr)
    assert "lost the engine" in reported or "cannot reach" in reported, reported

    assert invoke("clean").returncode == 0  # the containers the outage left behind
    checkpoint = last_listed_checkpoint(run_dir)
    assert checkpoint >= 1
    assert resume(fashion_mnist, outputs) == checkpoint
    tally.runs_resumed += 1
    assert_complete(run_dir, epochs)
    tally.containers_left += len(containers_mounting(client, outputs))
    assert containers_mounting(client, outputs) == []

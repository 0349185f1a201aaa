"""`invoke train` end to end: a real engine, the real runtime image, real Fashion-MNIST (a subset)."""

from __future__ import annotations

import functools
import grp
import json
import os
import pty
import pwd
import secrets
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from enginelib import (
    CONTAINER_PATH,
    ROOT,
    containers_mounting,
    invoke,
    limit_train,
    project_containers,
    start_invoke,
    step_delay_for,
    steps_per_epoch,
    wait_for,
    wait_until_it_reaches_the_engine,
)

from tfdock_host import engine, gpus, run, spec, training
from tfdock_host.errors import EngineError

pytestmark = pytest.mark.engine

# Small enough for 2 cores, with enough steps per epoch (batch 64) to learn in one epoch.
SUBSET = ["--limit-train", "4000", "--limit-test", "1000", "--batch-size", "64"]
TEST_USER, TEST_UID = "tfdock-e2e", 4321
STANDIN_DIR = "/usr/local/lib/tfdock-gpu-standin"
STANDIN_LOG = Path(os.environ.get("TFDOCK_GPU_STANDIN_LOG", "/var/log/tfdock-gpu-standin.log"))
# What TensorFlow prints as it starts (issue 16 goal 4): hidden unless `invoke train --verbose`.
TF_START_NOTICES = ("oneDNN custom operations are on", "All log messages before absl::InitializeLog()")


def train(fashion_mnist: Path, output_dir: Path, *options: str, trainer: list[str] = SUBSET, **kwargs):
    args = ["train", "--data-dir", str(fashion_mnist), "--output-dir", str(output_dir), *options]
    return invoke(*args, "--", *trainer, **kwargs)


@pytest.fixture(scope="module")
def invoking_user():
    """A non-root user with access to the engine (created when the suite runs as root, as in CI)."""
    if os.getuid() != 0:
        yield pwd.getpwuid(os.getuid()).pw_name, os.getuid()
        return
    socket_group = grp.getgrgid(os.stat("/var/run/docker.sock").st_gid).gr_name
    subprocess.run(["userdel", "-r", TEST_USER], capture_output=True, check=False)
    subprocess.run(["useradd", "-u", str(TEST_UID), "-G", socket_group, "-m", TEST_USER], check=True)
    # The user runs this checkout with this Python; either may sit below a 0700 dir (/root, mktemp -d).
    opened = _grant_traverse([ROOT, Path(sys.executable).resolve()])
    try:
        yield TEST_USER, TEST_UID
    finally:
        for directory, mode in opened:
            directory.chmod(mode)
        subprocess.run(["userdel", "-r", TEST_USER], capture_output=True, check=False)


def _grant_traverse(paths: list[Path]) -> list[tuple[Path, int]]:
    """Let other users pass through (not list) the dirs above these paths; returns what to restore."""
    opened = []
    for directory in {parent for path in paths for parent in path.parents}:
        mode = stat.S_IMODE(directory.stat().st_mode)
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)
            opened.append((directory, mode))
    return opened


def test_train_leaves_model_and_metrics_owned_by_the_invoking_user(
    fashion_mnist, invoking_user, runtime_image
):
    name, uid = invoking_user
    home = Path(tempfile.mkdtemp(prefix="tfdock-e2e-"))
    os.chown(home, uid, uid)
    home.chmod(0o755)
    outputs = home / "outputs"  # does not exist yet: the task must create it as the user, not Docker as root
    try:
        result = train(
            fashion_mnist,
            outputs,
            "--gpus",
            "none",
            "--epochs",
            "1",
            env={"HOME": str(home)},
            user=name if os.getuid() == 0 else "",
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        run_dir = (outputs / "latest").resolve()
        # The last line names the run dir as the host sees it; no message names a container path.
        assert result.stdout.splitlines()[-1] == f"{training.RUN_DIR_LINE} {run_dir}", result.stdout[-500:]
        assert [notice for notice in TF_START_NOTICES if notice in output] == [], output[-3000:]
        assert CONTAINER_PATH.findall(output) == [], output[-3000:]
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["epochs_completed"] == 1
        assert metrics["test_accuracy"] > 0.6, metrics  # far above chance (0.1) after one epoch on 2k images
        assert (run_dir / "model.keras").stat().st_size > 10_000
        owners = {path.lstat().st_uid for path in [outputs, *outputs.rglob("*")]}
        assert owners == {uid}, f"files not owned by {name} ({uid}): {owners}"
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_a_cpu_quota_reaches_the_container_and_the_trainer_sizes_its_threads_by_it(
    fashion_mnist, tmp_path, client, runtime_image
):
    """Issue 16 goal 3c: `--cpus 1` is the container's quota, and the trainer's summary line says so."""
    trainer = ["--limit-train", "512", "--limit-test", "128", "--batch-size", "64"]
    command = ["train", "--gpus", "none", "--cpus", "1", "--epochs", "1", "--data-dir", str(fashion_mnist)]
    process = start_invoke(*command, "--output-dir", str(tmp_path), "--", *trainer)
    (container, *_) = wait_for(
        lambda: containers_mounting(client, tmp_path), "the training container", process=process, every=0.05
    )
    nano_cpus = container.attrs["HostConfig"]["NanoCpus"]
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, (stdout + stderr)[-3000:]
    assert nano_cpus == 1_000_000_000
    assert "1 thread (CPU quota 1)" in stdout, stdout[-3000:]


def test_verbose_brings_back_tensorflows_start_up_notices(fashion_mnist, tmp_path, runtime_image):
    trainer = ["--limit-train", "512", "--limit-test", "128", "--batch-size", "64"]
    result = train(fashion_mnist, tmp_path, "--gpus", "none", "--epochs", "1", "--verbose", trainer=trainer)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # absl's notice on every machine; oneDNN's only where TensorFlow turns oneDNN on (avx512/amx CPUs).
    assert TF_START_NOTICES[1] in output, output[-3000:]


def test_an_invalid_cpu_quota_is_one_line_and_starts_nothing(fashion_mnist, tmp_path, client):
    result = train(fashion_mnist, tmp_path, "--gpus", "none", "--cpus", "0")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "invalid --cpus '0'" in result.stderr
    assert containers_mounting(client, tmp_path) == []


def test_on_a_terminal_a_live_progress_line_reaches_it_before_its_line_ends(runtime_image, scratch):
    """Issue 16 goal 6: with the host's stdout a terminal the container is told TFDOCK_PROGRESS=live, and
    what it writes with \\r and no newline shows at once: the container waits until the test has seen it."""
    go = scratch / "go"
    script = 'printf "\\r%s step 1" "$TFDOCK_PROGRESS"; while [ ! -e /outputs/go ]; do sleep 0.05; done; '
    script += 'printf "\\r%s step 2\\n" "$TFDOCK_PROGRESS"'
    runner = (
        "import sys; from pathlib import Path; from tfdock_host import run; "
        f"sys.exit(run.execute(run.task_spec('progress', {runtime_image!r}, ['sh', '-c', {script!r}], "
        f"output_dir=Path({str(scratch)!r}))))"
    )
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", runner],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    seen = _read_until(controller, b"\rlive step 1", process)
    go.touch()
    seen += _read_until(controller, b"\rlive step 2", process)
    assert process.wait(timeout=60) == 0, seen.decode(errors="replace")
    os.close(controller)


def _read_until(controller: int, wanted: bytes, process: subprocess.Popen, timeout: float = 300) -> bytes:
    """The terminal's output until `wanted` shows; fails if the process ends first (timeout: a hang)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        assert time.monotonic() < deadline, f"no {wanted!r} after {timeout} s: {seen[-2000:]!r}"
        ready, _, _ = select.select([controller], [], [], 0.5)
        if ready:
            try:
                seen += os.read(controller, 4096)
            except OSError:  # the process closed the terminal
                pytest.fail(f"exit {process.wait()} before {wanted!r}: {seen[-2000:]!r}")
    return seen


def test_a_failing_training_returns_its_exit_code_in_one_line(fashion_mnist, tmp_path, runtime_image):
    result = train(fashion_mnist, tmp_path, "--gpus", "none", trainer=["--epochs", "0"])
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "epochs" in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_an_invalid_gpus_value_is_one_line_and_starts_nothing(fashion_mnist, tmp_path, client):
    result = train(fashion_mnist, tmp_path, "--gpus", "device=")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "invalid --gpus value" in result.stderr
    assert containers_mounting(client, tmp_path) == []


SIGINT_EPOCHS, SIGINT_BATCH = 3, 64
SIGINT_STEPS = SIGINT_EPOCHS * steps_per_epoch(limit_train(1000), SIGINT_BATCH)
# Once the trainer has written config.json, every step is ahead, each followed by --step-delay (FOR TESTS
# ONLY) so that they last at least 4 s: a Ctrl-C within half of that lands while it trains, on any machine.
SIGINT_STEP_DELAY_S = step_delay_for(4.0, SIGINT_STEPS)
TRAINING_WINDOW_S = SIGINT_STEPS * SIGINT_STEP_DELAY_S / 2
SIGINT_TRAINING = ["--limit-train", str(limit_train(1000)), "--limit-test", "200"]
SIGINT_TRAINING += ["--batch-size", str(SIGINT_BATCH), "--step-delay", f"{SIGINT_STEP_DELAY_S:.3f}"]
SIGINT_MOMENTS = ("before the container exists", "while TensorFlow starts", "while it trains")


def test_sigint_at_random_moments_leaves_no_container(fashion_mnist, tmp_path, client, runtime_image, rng):
    """Ctrl-C while the task checks images (no container yet), while TensorFlow starts in the container, or
    while it trains: 130, nothing left. Each moment, chosen from what the run was seen doing, comes twice."""
    moments = [*SIGINT_MOMENTS, *SIGINT_MOMENTS]
    rng.shuffle(moments)
    for round_number, moment in enumerate(moments, start=1):
        outputs = tmp_path / f"round-{round_number}"
        command = [sys.executable, "-m", "invoke", "train", "--gpus", "none", "--epochs", str(SIGINT_EPOCHS)]
        command += ["--data-dir", str(fashion_mnist), "--output-dir", str(outputs), "--", *SIGINT_TRAINING]
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        wait_until_it_reaches_the_engine(process)  # image checks follow, then the container
        delay = 0.0
        if moment == "while TensorFlow starts":
            running = functools.partial(containers_mounting, client, outputs, status="running")
            wait_for(running, moment, process=process, every=0.05)
        elif moment == "while it trains":
            wait_for((outputs / "latest" / "config.json").is_file, moment, process=process)
            delay = rng.uniform(0, TRAINING_WINDOW_S)
        time.sleep(delay)
        existing = [(container.name, container.status) for container in containers_mounting(client, outputs)]
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        what = f"round {round_number}: SIGINT {delay:.2f} s after {moment!r} (containers: {existing})"
        print(what)
        if moment == "before the container exists":
            assert existing == [], f"{what}: the moment was missed"
        else:
            assert "running" in dict(existing).values(), f"{what}: the run had ended, the moment was missed"
        assert process.returncode == 130, f"{what}: exit {process.returncode}: {stderr[-2000:]}"
        assert containers_mounting(client, outputs) == [], f"{what}: a container was left"


def test_a_signal_while_the_engine_creates_the_container_leaves_nothing(
    client, runtime_image, monkeypatch, capsys
):
    """The engine finishes a create whose request was cut short: a signal landing inside create() must
    wait for it, or the container appears after the cleanup removed its name. (Once 43 of 60 leaked.)
    The SIGINT goes once the create request is sent and before its response is read: inside the engine's
    create by construction, on an engine of any speed."""
    import http.client

    from docker.models.containers import ContainerCollection

    create, read_response = ContainerCollection.create, http.client.HTTPConnection.getresponse
    in_create = threading.Event()

    def create_in_flight(self, *args, **kwargs):
        in_create.set()
        try:
            return create(self, *args, **kwargs)
        finally:
            in_create.clear()

    def response_after_sigint(self, *args, **kwargs):
        if in_create.is_set():  # the create request is on the wire: the engine is making the container
            in_create.clear()
            os.kill(os.getpid(), signal.SIGINT)
        return read_response(self, *args, **kwargs)

    monkeypatch.setattr(ContainerCollection, "create", create_in_flight)
    monkeypatch.setattr(http.client.HTTPConnection, "getresponse", response_after_sigint)
    task = f"signal-check-{secrets.token_hex(3)}"  # this test's own containers
    for attempt in range(10):
        started = time.time()
        spec = run.task_spec(task, runtime_image, ["sleep", "60"])
        assert run.execute(spec) == 130, f"attempt {attempt}"
        _wait_for_engine_event(client, spec.name, "create", since=started)
        left = [(c.name, c.status) for c in project_containers(client, task)]
        assert left == [], f"left at attempt {attempt}: {left}; stderr: {capsys.readouterr().err}"


def _wait_for_engine_event(client, name: str, action: str, since: float, timeout: float = 60) -> None:
    """Until the engine's event log shows `action` for the container `name` (e.g. a create it finished)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = client.events(since=since, until=time.time(), filters={"container": name}, decode=True)
        if any(event.get("Action") == action for event in events):
            return
        time.sleep(0.1)
    pytest.fail(f"the engine logged no {action} of {name} within {timeout} s")


# --- GPU requests. No GPU exists here: CI runs dockerd with a stand-in nvidia-container-runtime-hook
# (.ci/nvidia-container-runtime-hook, a CI substitute for a GPU host) that makes the engine accept GPU
# requests and records the NVIDIA_* environment each container was given.


def _engine_has_nvidia_driver() -> bool:
    return (
        Path(STANDIN_DIR, "nvidia-container-runtime-hook").exists()
        or shutil.which("nvidia-container-runtime-hook") is not None
    )


@pytest.mark.gpu_standin
@pytest.mark.parametrize(("spec", "visible"), [("all", "all"), ("2", "0,1"), ("device=1,3", "1,3")])
def test_gpu_requests_reach_the_container_and_the_trainer_reports_no_gpu(
    fashion_mnist, tmp_path, runtime_image, spec, visible
):
    if not _engine_has_nvidia_driver():
        pytest.skip("the engine has no NVIDIA hook, not even CI's stand-in (see .ci/provision-engine)")
    seen_before = STANDIN_LOG.read_text() if STANDIN_LOG.exists() else ""
    result = train(
        fashion_mnist,
        tmp_path,
        "--gpus",
        spec,
        "--variant",
        "cpu",
        "--epochs",
        "1",
        trainer=["--limit-train", "256", "--limit-test", "128", "--batch-size", "32"],
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "GPUs visible to TensorFlow: none" in output
    recorded = STANDIN_LOG.read_text()[len(seen_before) :]
    assert f"NVIDIA_VISIBLE_DEVICES={visible} " in recorded + " ", recorded


@pytest.mark.gpu_standin
def test_gpu_runs_share_a_cuda_jit_cache_that_outlives_them_and_cpu_runs_have_none(
    runtime_image, scratch, monkeypatch
):
    """Issue 19 item 5: HOME is a tmpfs, so CUDA's PTX-JIT cache lives on a host dir of the user's: what
    one GPU run writes there, the next one finds."""
    if not _engine_has_nvidia_driver():
        pytest.skip("the engine has no NVIDIA hook, not even CI's stand-in (see .ci/provision-engine)")
    monkeypatch.setenv("XDG_CACHE_HOME", str(scratch / "cache"))
    all_gpus, entry = tuple(gpus.parse("all")), secrets.token_hex(8)
    write = f'test "$CUDA_CACHE_PATH" = {spec.CUDA_CACHE_DIR} && test "$CUDA_CACHE_MAXSIZE" -gt 268435456 '
    write += f'&& echo {entry} > "$CUDA_CACHE_PATH/entry"'
    assert run.execute(run.task_spec("cuda-cache", runtime_image, ["sh", "-c", write], gpus=all_gpus)) == 0
    read = f'test "$(cat "$CUDA_CACHE_PATH/entry")" = {entry}'
    assert run.execute(run.task_spec("cuda-cache", runtime_image, ["sh", "-c", read], gpus=all_gpus)) == 0
    on_host = spec.cuda_cache_dir() / "entry"
    assert on_host.read_text().strip() == entry
    owner = engine.current().identity.writable_owner or (os.getuid(), os.getgid())
    assert on_host.stat().st_uid == owner[0]
    cpu_only = f'test -z "$CUDA_CACHE_PATH" && test ! -e {spec.CUDA_CACHE_DIR}'
    assert run.execute(run.task_spec("cuda-cache", runtime_image, ["sh", "-c", cpu_only])) == 0


@pytest.fixture(scope="module")
def engine_without_nvidia():
    """A second dockerd whose PATH has no NVIDIA hook: an engine as on a host without the toolkit."""
    if shutil.which("nvidia-container-runtime-hook", path="/usr/sbin:/usr/bin:/sbin:/bin"):
        pytest.skip("a real NVIDIA hook is installed here: every engine on this host can run GPU requests")
    name = "tfdock-nogpu"
    socket_path = f"/var/run/{name}.sock"
    # Its own bridge: with --bridge=none, dockerd deletes docker0, which the main engine still uses.
    bridge = "tfdocknogpu0"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], capture_output=True, check=False)
    daemon = subprocess.Popen(
        [
            "dockerd",
            f"--data-root=/var/lib/{name}",
            f"--exec-root=/var/run/{name}",
            f"--pidfile=/var/run/{name}.pid",
            f"--host=unix://{socket_path}",
            f"--bridge={bridge}",
            "--iptables=false",
            "--ip-masq=false",
        ],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    host = f"unix://{socket_path}"
    try:
        deadline = time.monotonic() + 300  # bounds a hang, on a loaded machine too
        while subprocess.run(["docker", "-H", host, "version"], capture_output=True, check=False).returncode:
            assert daemon.poll() is None and time.monotonic() < deadline, "the second dockerd did not start"
            time.sleep(0.5)
        empty_rootfs = subprocess.run(
            ["tar", "-c", "-T", "/dev/null"], capture_output=True, check=True
        ).stdout
        subprocess.run(["docker", "-H", host, "import", "-", "tfdock-empty"], input=empty_rootfs, check=True)
        yield host
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False)
        shutil.rmtree(f"/var/lib/{name}", ignore_errors=True)


def test_without_an_nvidia_runtime_a_gpu_request_is_one_clear_error(engine_without_nvidia, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", engine_without_nvidia)
    _resolve_the_engine_anew()
    try:
        spec = run.task_spec("train", "tfdock-empty", ["true"], gpus=tuple(gpus.parse("all")))
        with pytest.raises(EngineError) as raised:
            run.execute(spec)
        assert "no NVIDIA runtime" in raised.value.message
        assert "NVIDIA Container Toolkit" in raised.value.hint and "--gpus none" in raised.value.hint
        assert engine.connect().containers.list(all=True) == []
    finally:
        monkeypatch.delenv("DOCKER_HOST")
        _resolve_the_engine_anew()


def _resolve_the_engine_anew() -> None:
    """The engine is resolved once per process: after DOCKER_HOST changes, forget the endpoint, the client
    and what the engine said of itself."""
    for resolved in (engine.endpoint, engine.connect, engine.current):
        resolved.cache_clear()


def test_without_an_nvidia_runtime_the_gpu_bench_row_is_the_same_one_line(engine_without_nvidia, scratch):
    """Issue 19: `invoke bench --gpus all` asks the engine for the GPUs before any benchmark runs."""
    results = ROOT / "benchmarks" / "results" / "gpu_training.json"
    written_before = results.stat().st_mtime_ns if results.exists() else None
    environment = {
        "DOCKER_HOST": engine_without_nvidia,
        "INVOKE_TFDOCK_BASE_IMAGE": "tfdock-empty",  # the probe image that engine has
        "XDG_CACHE_HOME": str(scratch),
    }
    result = invoke("bench", "--quick", "--gpus", "all", env=environment)
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: GPUs were requested but the engine") and "no NVIDIA runtime" in line
    assert engine.NVIDIA_RUNTIME_FIX in line
    assert (results.stat().st_mtime_ns if results.exists() else None) == written_before
    left = subprocess.run(
        ["docker", "-H", engine_without_nvidia, "ps", "-aq"], capture_output=True, text=True, check=True
    )
    assert left.stdout.strip() == "", left.stdout

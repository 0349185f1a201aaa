"""A project made with `copier copy`, end to end on the real engine: its README's two commands (training on
real Fashion-MNIST, then `nox`), and an entry point of the user's own, declared in configuration only, through
`invoke train`, `--workers 2`, `--debug` (a DAP client attaches) and `invoke k8s`: no edit of the host side.

The tasks run with this interpreter's host tools, the ones the README's first line installs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from test_template import generate, template_repo

from tfdock_host import run, settings

pytestmark = [pytest.mark.engine, pytest.mark.slow]
sys.path.insert(0, str(settings.ROOT / "tests" / "engine"))
from dap_client import DapClient  # noqa: E402

REAL_DATA = settings.load().fashion_mnist_dir
SMALL = ["--epochs", "1", "--", "--limit", "1024"]
# The user's own second entry point: a new module, and nothing else changed but one variable.
SWEEP = '''"""A sweep of my own: the trainer at batch 64."""

import sys

from digits_lab import train

if __name__ == "__main__":
    print("sweep: batch 64", flush=True)
    sys.exit(train.main(["--batch-size", "64", *sys.argv[1:]]))
'''
OWN_ENTRY_POINT = {"INVOKE_TFDOCK_PROJECT_TRAIN_MODULE": "digits_lab.sweep"}
DEBUG_ATTACH_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def project() -> Iterator[Path]:
    # Every user can traverse it: invoked as root, the containers run as the image's user.
    scratch = Path(tempfile.mkdtemp(prefix="tfdock-template-"))
    scratch.chmod(0o755)
    try:
        template = template_repo(scratch / "template")
        project = generate(template, scratch / "digits-lab", "minimal")
        (project / "src" / "digits_lab" / "sweep.py").write_text(SWEEP)
        yield project
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def tool(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("INVOKE_TFDOCK_")}
    if "INVOKE_TFDOCK_BASE_IMAGE" in os.environ:  # CI's offline twin of the base image
        clean["INVOKE_TFDOCK_BASE_IMAGE"] = os.environ["INVOKE_TFDOCK_BASE_IMAGE"]
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=project, env={**clean, **(env or {})},
        capture_output=True, text=True, timeout=1500, check=False,
    )  # fmt: skip


def expected_owner() -> int:
    return os.getuid() if os.getuid() != 0 else run.IMAGE_USER_IDS_WHEN_ROOT[0]


def test_the_readmes_first_command_trains_and_leaves_model_and_metrics_owned_by_the_user(project):
    assert "&& invoke train\n" in (project / "README.md").read_text()
    result = tool(project, "invoke", "train", env={"INVOKE_TFDOCK_DATA_DIR": REAL_DATA})
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (project / "outputs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 2 and metrics["test_accuracy"] > 0.8
    for path in (run_dir, run_dir / "model.keras", run_dir / "metrics.json"):
        assert path.stat().st_uid == expected_owner(), path


def test_the_readmes_second_command_nox_passes(project):
    assert "\n    nox\n" in (project / "README.md").read_text()
    result = tool(project, "nox")
    assert result.returncode == 0, result.stdout[-6000:]
    assert "Session lint was successful" in result.stderr and "Session tests was successful" in result.stderr


def test_an_entry_point_of_the_users_own_trains(project, tmp_path):
    result = tool(project, "invoke", "train", "--data-dir", REAL_DATA, "--output-dir", str(tmp_path), *SMALL,
                  env=OWN_ENTRY_POINT)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sweep: batch 64" in result.stdout
    assert [path.name for path in tmp_path.glob("*/model.keras")]


def test_it_trains_as_two_workers(project, tmp_path):
    result = tool(project, "invoke", "train", "--workers", "2", "--data-dir", REAL_DATA,
                  "--output-dir", str(tmp_path), *SMALL, env=OWN_ENTRY_POINT)  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "[worker 0] sweep: batch 64" in result.stdout and "[worker 1] sweep: batch 64" in result.stdout
    (run_dir,) = [path.parent for path in tmp_path.glob("*/model.keras")]  # the chief's only
    assert json.loads((run_dir / "metrics.json").read_text())["epochs_completed"] == 1


def test_it_runs_under_the_debugger_with_an_ide_attached(project, tmp_path):
    log = (tmp_path / "invoke.log").open("w")
    clean = {key: value for key, value in os.environ.items() if key != "INVOKE_TFDOCK_DATA_DIR"}
    training = subprocess.Popen(
        [sys.executable, "-m", "invoke", "train", "--debug", "--data-dir", REAL_DATA,
         "--output-dir", str(tmp_path / "outputs"), *SMALL],
        cwd=project, env={**clean, **OWN_ENTRY_POINT}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    dap = None
    try:
        dap = DapClient.connect("127.0.0.1", run.DEBUG_PORT, time.monotonic() + DEBUG_ATTACH_TIMEOUT_S)
        attach = dap.send("attach", {"justMyCode": False})
        dap.event("initialized")
        dap.request("configurationDone")
        dap.response_to(attach)
        assert training.wait(timeout=DEBUG_ATTACH_TIMEOUT_S) == 0, (tmp_path / "invoke.log").read_text()[
            -3000:
        ]
    finally:
        if dap:
            dap.close()
        if training.poll() is None:
            training.send_signal(2)
            training.wait(timeout=60)
        log.close()
    assert "sweep: batch 64" in (tmp_path / "invoke.log").read_text()


def test_its_kubernetes_job_runs_that_entry_point(project, tmp_path):
    result = tool(project, "invoke", "k8s", "--image", "registry.example.com/digits-lab:1", "--output",
                  str(tmp_path), env=OWN_ENTRY_POINT)  # fmt: skip
    assert result.returncode == 0, result.stderr
    job = yaml.safe_load((tmp_path / "job-digits-lab-train.yaml").read_text())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert 'exec python -m digits_lab.sweep "$@"' in container["args"][2]
    assert job["metadata"]["labels"]["app.kubernetes.io/name"] == "digits-lab"

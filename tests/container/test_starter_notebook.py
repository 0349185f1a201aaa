"""notebooks/starter.ipynb, executed as it is on a real run, so that it never goes stale."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from containerlib import run_module
from nbclient import NotebookClient

STARTER = Path(__file__).resolve().parents[2] / "notebooks" / "starter.ipynb"
CELL_TIMEOUT_S = 600  # a bound for a hung kernel, far above what a cell takes on any machine


@pytest.fixture
def run_with_evaluation(trained_run: Path, fashion_dir: Path, tmp_path: Path) -> Path:
    """A copy of the shared run with `invoke evaluate`'s output in it (what the notebook plots)."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir, symlinks=True)
    args = [
        "--model",
        str(run_dir),
        "--data-dir",
        str(fashion_dir),
        "--output-dir",
        str(run_dir / "evaluation"),
    ]
    result = run_module("tfdock.evaluate", [*args, "--limit-test", "2000"])
    assert result.returncode == 0, result.stderr
    return run_dir


def test_the_starter_notebook_runs_on_a_real_run_and_plots_its_predictions_and_confusion_matrix(
    run_with_evaluation: Path, fashion_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("TFDOCK_RUN_DIR", str(run_with_evaluation))
    monkeypatch.setenv("TFDOCK_DATA_DIR", str(fashion_dir))
    monkeypatch.setenv("PYTHONPATH", str(STARTER.parents[1] / "src"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "matplotlib"))
    notebook = nbformat.read(STARTER, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # the kernel inherits this environment; a failing cell raises CellExecutionError

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    plots = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(plots) == 2, "expected the predictions' and the confusion matrix's plots"
    printed = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    evaluation = json.loads((run_with_evaluation / "evaluation" / "evaluation.json").read_text())
    assert f"accuracy {evaluation['accuracy']:.4f}" in printed, printed
    assert f"run {run_with_evaluation.name}: fashion-mnist, 2 epochs" in printed, printed

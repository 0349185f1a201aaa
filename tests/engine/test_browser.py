"""What a person sees in the two web pages of the workflow, in a real browser (Debian's chromium):
JupyterLab from `invoke notebook` and TensorBoard from `invoke tensorboard`, each on the real engine.

Each test leaves a screenshot in reports/screenshots/ for a person to look at.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import (
    Service,
    chromium,
    in_shadow_roots,
    screenshot,
    wait_for,
    wait_for_element,
    wait_for_text,
)  # fmt: skip
from enginelib import ROOT, free_port, invoke

from tfdock_host.run import IMAGE_USER_IDS_WHEN_ROOT

pytestmark = pytest.mark.engine

NOTEBOOKS = ROOT / "notebooks"
TOKEN_URL = r"http://127\.0\.0\.1:\d+/lab\?token=[\w-]+"
# What the notebook runs: TensorFlow and the project's package, a few real images from the mounted data dir.
CELLS = [
    "import matplotlib.pyplot as plt\nimport tensorflow as tf\nfrom pathlib import Path\n"
    "from tfdock import data\nprint('TensorFlow', tf.__version__)",
    "splits = data.load(Path('/data'), 'fashion-mnist')\n"
    "fig, axes = plt.subplots(1, 8, figsize=(8, 1.4))\n"
    "for axis, image, label in zip(axes, splits.test_images, splits.test_labels):\n"
    "    axis.imshow(image, cmap='gray'); axis.set_title(int(label)); axis.axis('off')\n"
    "plt.show()",
]


def _files_owner() -> int:
    """Who owns what a task's container writes on the host: the invoking user, or the image's user when
    invoked as root (as in CI)."""
    return os.getuid() if os.getuid() != 0 else IMAGE_USER_IDS_WHEN_ROOT[0]


def _outputs_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="tfdock-browser-"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def jupyterlab(dev_image, fashion_mnist) -> Iterator[tuple[Service, str]]:
    """`invoke notebook` on a free port, and the token URL it printed."""
    env = {"INVOKE_TFDOCK_DATA_DIR": str(fashion_mnist), "INVOKE_TFDOCK_OUTPUT_DIR": str(_outputs_dir())}
    service = Service("notebook", free_port(), env)
    try:
        url = service.wait_for_line(TOKEN_URL).group(0)
        service.wait_until_serving("/api/status")
        yield service, url
    finally:
        assert service.stop() == 130, service.output[-3000:]


@pytest.fixture
def notebook_path() -> Iterator[Path]:
    """A notebook of this test's own in notebooks/, removed afterwards with Jupyter's checkpoint of it."""
    path = NOTEBOOKS / f"browser-test-{secrets.token_hex(4)}.ipynb"
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        (NOTEBOOKS / ".ipynb_checkpoints" / f"{path.stem}-checkpoint.ipynb").unlink(missing_ok=True)


def _create_notebook(url: str, path: Path) -> None:
    """What JupyterLab's File > New does: a PUT to the Contents API (here with our cells in it)."""
    base, token = url.split("/lab?token=")
    cells = [
        {"cell_type": "code", "metadata": {}, "source": source, "outputs": [], "execution_count": None}
        for source in CELLS
    ]
    kernelspec = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    content = {"cells": cells, "metadata": {"kernelspec": kernelspec}, "nbformat": 4, "nbformat_minor": 5}
    request = urllib.request.Request(
        f"{base}/api/contents/notebooks/{path.name}",
        data=json.dumps({"type": "notebook", "content": content}).encode(),
        method="PUT",
        headers={"Content-Type": "application/json", "Authorization": f"token {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201, response.status


def _plot_or_traceback(driver) -> str | None:
    """'plot' once a cell's output image is in the page, the traceback's text if a cell failed, else None."""
    from selenium.webdriver.common.by import By

    if driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img"):
        return "plot"
    text = "\n".join(output.text for output in driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output"))
    return text if "Traceback" in text else None


def _click_menu(driver, menu: str, item: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(
        By.XPATH, f"//div[contains(@class,'lm-MenuBar-itemLabel') and text()='{menu}']"
    ).click()
    driver.find_element(By.XPATH, f"//div[contains(@class,'lm-Menu-itemLabel') and text()='{item}']").click()


def _saved_with_outputs(path: Path) -> dict | None:
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):  # not there yet, or being written
        return None
    outputs = [output for cell in saved["cells"] for output in cell.get("outputs", [])]
    return saved if any("image/png" in output.get("data", {}) for output in outputs) else None


def test_jupyterlab_runs_the_projects_code_on_real_data_and_saves_the_notebook_on_the_host(
    jupyterlab, notebook_path
):
    from selenium.webdriver.common.by import By

    _, url = jupyterlab
    _create_notebook(url, notebook_path)
    shot = "jupyterlab-notebook"
    with chromium() as driver:
        driver.get(url.replace("/lab?", f"/lab/tree/notebooks/{notebook_path.name}?"))
        wait_for_element(driver, "#jp-main-dock-panel", shot)  # JupyterLab's shell loaded
        wait_for_element(driver, ".jp-Notebook .jp-Cell", shot, count=len(CELLS))
        wait_for_text(driver, "Idle", shot, css="#jp-main-statusbar")  # the kernel started
        _click_menu(driver, "Run", "Run All Cells")
        outcome = wait_for(driver, _plot_or_traceback, "a plot (or a traceback) from the cells", shot)
        screenshot(driver, shot)
        assert outcome == "plot", f"a cell failed in the browser:\n{outcome}"
        printed = driver.find_element(By.CSS_SELECTOR, ".jp-Notebook").text
        assert "TensorFlow 2." in printed, printed
        _click_menu(driver, "File", "Save Notebook")
        saved = wait_for(driver, lambda _: _saved_with_outputs(notebook_path), "the saved notebook", shot)

    assert [cell["execution_count"] for cell in saved["cells"]] == [1, 2]
    assert notebook_path.stat().st_uid == _files_owner()


def test_jupyterlab_without_the_token_shows_the_login_page(jupyterlab):
    from selenium.webdriver.common.by import By

    _, url = jupyterlab
    with chromium() as driver:
        driver.get(url.split("?token=")[0])
        wait_for_element(driver, "input[type=password]", "jupyterlab-login")  # the login form
        screenshot(driver, "jupyterlab-login")
        assert "/login" in driver.current_url, driver.current_url
        assert not driver.find_elements(By.ID, "jp-main-dock-panel"), "Lab loaded without a token"


def _loss_and_accuracy_drawn(driver) -> bool:
    return all(_drawn_lines(driver, tag) for tag in ("loss", "accuracy"))


def _drawn_lines(driver, tag: str) -> int:
    """Line paths drawn in the scalar card of a tag (TensorBoard's cards live in shadow roots)."""
    script = """
        return deep(document, 'tf-scalar-card').filter(card => card.tag === arguments[0])
            .flatMap(card => deep(card.shadowRoot, 'path.line'))
            .filter(path => (path.getAttribute('d') || '').length > 10).length;
    """
    return in_shadow_roots(driver, script, tag)


def test_tensorboard_draws_a_runs_loss_and_accuracy_and_opens_its_profile(
    fashion_mnist, runtime_image, dev_image
):
    from selenium.webdriver.common.by import By

    outputs = _outputs_dir()
    trained = invoke(
        "train", "--gpus", "none", "--epochs", "2", "--profile", "2:4",
        "--data-dir", str(fashion_mnist), "--output-dir", str(outputs),
        "--", "--limit-train", "2000", "--limit-test", "500", "--batch-size", "64",
    )  # fmt: skip
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-3000:]
    run = (outputs / "latest").resolve().name

    service = Service("tensorboard", free_port(), {"INVOKE_TFDOCK_OUTPUT_DIR": str(outputs)})
    try:
        service.wait_until_serving("/data/logdir")
        base = f"http://127.0.0.1:{service.port}"
        with chromium() as driver:
            driver.get(f"{base}/#scalars&tagFilter=%5E(loss%7Caccuracy)%24")
            wait_for(
                driver,
                _loss_and_accuracy_drawn,
                "lines in the loss and accuracy charts",
                "tensorboard-scalars",
            )
            wait_for_text(driver, f"{run}/tensorboard", "tensorboard-scalars")  # in the runs list
            screenshot(driver, "tensorboard-scalars")

            driver.get(f"{base}/#profile")
            [plugin] = wait_for_element(driver, "iframe", "tensorboard-profile")
            driver.switch_to.frame(plugin)
            wait_for_text(driver, run, "tensorboard-profile")  # its session in the profile plugin
            overview = driver.find_element(By.TAG_NAME, "body").text
            assert "Overview Page" in overview, overview
            driver.switch_to.default_content()
            screenshot(driver, "tensorboard-profile")
    finally:
        assert service.stop() == 130, service.output[-3000:]

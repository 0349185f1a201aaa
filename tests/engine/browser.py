"""Support for the browser tests: Debian's chromium driven by Selenium, and `invoke notebook` /
`invoke tensorboard` run in the background as a user runs them.

Nothing is downloaded: the browser and its driver are Debian's (`chromium`, `chromium-driver`), named by
path, so Selenium Manager never looks for its own. Every page is on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from enginelib import ROOT, start_invoke

# Debian's by default; another Chromium and its matching driver by these variables (GitHub's runners).
CHROMIUM = Path(os.environ.get("TFDOCK_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("TFDOCK_CHROMEDRIVER", "/usr/bin/chromedriver"))
# Headless as root, with none of the background traffic a closed network refuses.
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1000",
)  # fmt: skip
SCREENSHOTS = ROOT / "reports" / "screenshots"
# Bounds for a page or a service that hangs; every wait ends as soon as what it waits for is seen.
PAGE_TIMEOUT_S = 120
SERVICE_TIMEOUT_S = 300

# Elements anywhere in the page, shadow roots included (TensorBoard's dashboards are Polymer elements).
DEEP_QUERY_JS = """
function deep(root, selector) {
  const found = [...root.querySelectorAll(selector)];
  for (const element of root.querySelectorAll('*')) {
    if (element.shadowRoot) found.push(...deep(element.shadowRoot, selector));
  }
  return found;
}
"""


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Chromium session with a profile of its own (no cookies shared between sessions)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        assert binary.is_file(), f"{binary} is missing: apt-get install chromium chromium-driver"
    profile = tempfile.mkdtemp(prefix="tfdock-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver, name: str) -> Path:
    """A PNG under reports/screenshots/ for a person to look at (CI keeps reports/)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot saved to {path}"
    return path


def wait_for(driver, condition, what: str, name: str):
    """condition's first truthy answer; when it never comes, a screenshot NAME-failed.png and a failure that
    says what was awaited, where, and what the page showed."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, PAGE_TIMEOUT_S).until(condition)
    except TimeoutException:
        path = screenshot(driver, f"{name}-failed")
        page = driver.find_element(By.TAG_NAME, "body").text[-1500:]
        raise AssertionError(
            f"{what}: not seen in {PAGE_TIMEOUT_S} s at {driver.current_url} (screenshot {path}); "
            f"the page:\n{page}"
        ) from None


def wait_for_element(driver, css: str, name: str, count: int = 0) -> list:
    """The elements matching css once there are any (or exactly `count`)."""
    from selenium.webdriver.common.by import By

    def found(page) -> list:
        elements = page.find_elements(By.CSS_SELECTOR, css)
        return elements if (len(elements) == count if count else elements) else []

    return wait_for(driver, found, f"`{css}`" + (f" x{count}" if count else ""), name)


def wait_for_text(driver, text: str, name: str, css: str = "body") -> None:
    from selenium.webdriver.common.by import By

    wait_for(driver, lambda page: text in page.find_element(By.CSS_SELECTOR, css).text, repr(text), name)


def in_shadow_roots(driver, script: str, *args):
    """Runs script with `deep(root, selector)` defined: querySelectorAll through shadow roots too."""
    return driver.execute_script(DEEP_QUERY_JS + script, *args)


class Service:
    """`invoke TASK --port P` in the background; its output is read as it comes, so a test waits on what
    the task printed rather than on a clock."""

    def __init__(self, task: str, port: int, env: dict[str, str]) -> None:
        self.process = start_invoke(task, "--port", str(port), env=env, stderr=subprocess.STDOUT)
        self.port = port
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, pattern: str) -> re.Match[str]:
        """The first match of pattern in the task's output; fails if the task ends or hangs first."""
        deadline = time.monotonic() + SERVICE_TIMEOUT_S
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output)
            if found:
                return found
            if self.process.poll() is not None:
                raise AssertionError(f"`invoke` exited {self.process.returncode}:\n{self.output[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"no /{pattern}/ in {SERVICE_TIMEOUT_S} s:\n{self.output[-3000:]}")

    def wait_until_serving(self, path: str) -> None:
        """Until http://127.0.0.1:PORT/path answers (any status): the server inside is up."""
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + SERVICE_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"`invoke` exited {self.process.returncode}:\n{self.output[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5):
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"nothing answered on port {self.port} in {SERVICE_TIMEOUT_S} s")

    def stop(self) -> int:
        """Ctrl-C, as a user stops it: the task removes its container and exits 130."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=SERVICE_TIMEOUT_S)
        self._reader.join(timeout=10)
        return code

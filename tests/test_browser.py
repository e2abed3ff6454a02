"""A real browser: JupyterLab on localhost, the convergence notebook run in headless Chromium, the explorer's
controls moved as a reader moves them (the epoch slider, the play button, the raw-map view, a second epoch
beside the first, the save button), the rendered image checked to change and the saved file to appear.
Screenshots are saved under the test's temp folder.

Needs the operating system's Chromium (``/usr/bin/chromium``; ``.ci/run`` installs it) and Playwright's
Python package (the ``test`` extra); Playwright never downloads a browser here.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if CHROMIUM is None:
    print("\ntests/test_browser.py: skipped, no Chromium on this machine (.ci/run installs Debian's chromium)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium executable on this machine "
                                "(install the OS package 'chromium'; .ci/run does)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def lab(tmp_path):
    """The convergence notebook as a reader opens it (its defaults read the shipped reference run), and
    JupyterLab serving its folder."""
    nb = nbformat.read(ROOT / "notebooks" / "04_convergence.ipynb", as_version=4)
    nbformat.write(nb, tmp_path / "04_convergence.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "jcfg"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "jrt")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
         "--LabApp.news_url=", "--ServerApp.disable_check_xsrf=True", "--allow-root"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                json.load(r)
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read().decode(errors="replace"))
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("JupyterLab did not start within 90 s")
    yield url, token, tmp_path
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_convergence_explorer_in_a_real_browser(lab):
    from playwright.sync_api import sync_playwright

    url, token, folder = lab
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        try:
            before, after = _run_and_move(page, url, token, folder)
            _new_controls(page, folder)
        finally:
            page.screenshot(path=str(folder / "last.png"))
            browser.close()
    assert after != before
    assert (folder / "explorer_after.png").stat().st_size > 10_000
    if os.environ.get("SACNN_SCREENSHOT"):  # refresh the README's picture: SACNN_SCREENSHOT=docs/explorer.png
        shutil.copy(folder / "explorer_after.png", ROOT / os.environ["SACNN_SCREENSHOT"])


def _run_and_move(page, url: str, token: str, folder: Path) -> tuple[str, str]:
    """Open the notebook, run all cells, move the epoch slider; the image's src before and after."""
    page.goto(f"{url}/lab/tree/04_convergence.ipynb?token={token}", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook", timeout=60_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle'], "
                           ".jp-Toolbar-kernelStatus", timeout=60_000)
    page.wait_for_timeout(2000)  # the kernel settles
    page.click("text=Run", timeout=10_000)  # the Run menu
    page.click("text=Run All Cells", timeout=10_000)
    slider = page.locator(".widget-slider .noUi-handle, .widget-hslider .noUi-handle").first
    slider.wait_for(timeout=120_000)
    image = page.locator(".jupyter-widgets img, .widget-image").first
    image.wait_for(timeout=60_000)
    image.scroll_into_view_if_needed()
    page.wait_for_function("img => img.src && img.complete && img.naturalWidth > 0",
                           arg=image.element_handle(), timeout=60_000)
    before = image.get_attribute("src")
    page.screenshot(path=str(folder / "explorer_before.png"), full_page=False)
    slider.scroll_into_view_if_needed()
    slider.focus()
    page.keyboard.press("Home")  # epoch 0: before training
    page.wait_for_function("([img, old]) => img.src !== old", arg=[image.element_handle(), before],
                           timeout=60_000)
    after = image.get_attribute("src")
    page.screenshot(path=str(folder / "explorer_after.png"), full_page=False)
    return before, after


def _changes(page, image, action) -> str:
    """Do ``action``; wait for the image's src to change; the new src."""
    old = image.get_attribute("src")
    action()
    page.wait_for_function("([img, old]) => img.src !== old", arg=[image.element_handle(), old], timeout=60_000)
    return image.get_attribute("src")


def _new_controls(page, folder: Path) -> None:
    """The first explorer's other controls, each as a reader uses it."""
    explorer = page.locator(".widget-vbox").filter(has=page.locator("text=save PNG")).first
    image = explorer.locator(".widget-image, img").first
    # play: steps through the epochs from the one shown (epoch 0 after the slider moved home)
    _changes(page, image, lambda: explorer.locator(".widget-play button").first.click())
    explorer.locator(".widget-play button").nth(1).click()  # stop: back to the first epoch
    # the raw s x t map with the winners marked
    _changes(page, image, lambda: explorer.locator("button:has-text('raw map')").first.click())
    page.wait_for_timeout(3000)  # painted (headless Chromium paints a new image late on a busy machine)
    page.screenshot(path=str(folder / "explorer_raw.png"), full_page=False)
    # a second epoch beside the first: a second image appears
    beside = explorer.locator("select").first
    values = beside.locator("option").all_inner_texts()
    beside.select_option(label=values[-1])
    explorer.locator(".widget-image, img").nth(1).wait_for(state="visible", timeout=60_000)
    # saving the view: a PNG in the notebook's folder
    explorer.locator("button:has-text('save PNG')").first.click()
    page.wait_for_function("el => el.textContent.includes('saved')",
                           arg=explorer.locator(".widget-html:has-text('saved')").first.element_handle(timeout=60_000),
                           timeout=60_000)
    page.wait_for_timeout(3000)
    page.screenshot(path=str(folder / "explorer_beside.png"), full_page=False)
    saved = list(folder.glob("explorer_epoch*.png"))
    assert saved and saved[0].stat().st_size > 20_000, saved

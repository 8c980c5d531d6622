"""JupyterLab in a real browser, as a learner uses it: Playwright drives the system's Chromium against
a JupyterLab server started here, runs a notebook, uses the recipe lab and the gallery, and opens the
executed notebook's HTML page (segkit.teaching.pages).

Playwright's own browser download cannot work offline, so it drives Debian's ``chromium``. Where it
is missing the tests skip, and fail instead under ``SEGKIT_REQUIRE_TOOLS=1`` or on CI with apt
(``tests.conftest.skip_or_fail``). A failing step keeps a screenshot in ``test-artifacts/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from segkit.runs import Run
from segkit.teaching.notebooks import NOTEBOOKS_DIR
from segkit.teaching.pages import write_page
from tests.conftest import REPO
from tests.system.conftest import (
    BUSY_PROMPT,
    free_port,
    gallery_of,
    loaded_images,
    plotly_points,
    save,
    screenshot_on_failure,
)

#: The notebook opened in the browser, and its parameters (seconds of training).
NOTEBOOK = "01_mild"
PARAMETERS = {"profile": "tiny", "duration": "2ba"}


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A JupyterLab server on a free local port with a token, serving a folder that holds a copy of
    the notebook with the tiny parameters injected (as papermill injects them)."""
    root = tmp_path_factory.mktemp("lab")
    book = load_notebook_node(str(NOTEBOOKS_DIR / f"{NOTEBOOK}.ipynb"))
    nbformat.write(parameterize_notebook(book, {**PARAMETERS, "save_folder": str(root / "runs")}),
                   root / f"{NOTEBOOK}.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    settings = root / ".lab-settings"
    # JupyterLab 4 renders only the cells in view ("windowing"): render them all, so that every output
    # can be checked; and no news pop-up over the page.
    for plugin, values in (("notebook-extension/tracker", {"windowingMode": "none"}),
                           ("apputils-extension/notification", {"fetchNews": "false"})):
        (settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings").parent.mkdir(parents=True, exist_ok=True)
        (settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings").write_text(json.dumps(values))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
           "JUPYTER_CONFIG_DIR": str(root / ".jupyter"), "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(root / ".workspaces")}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log = (root / "server.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(
                    f"{url}/api/status?token={token}", timeout=2) as answer:
                if answer.status == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"{url}/lab/tree/{NOTEBOOK}.ipynb?token={token}", root
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=20)
        if server.poll() is None:
            server.kill()
        log.close()


def run_all_cells(page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    # Every code cell gets an execution count once the kernel ran it; none may stay waiting.
    page.wait_for_function(
        """busy => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent);
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p)) && !prompts.includes(busy);
        }""", arg=BUSY_PROMPT, timeout=300_000, polling=500)


@pytest.fixture(scope="module")
def learner(browser, lab_server):
    """The notebook opened in JupyterLab, all its cells run from the Run menu, and saved: the page and
    the server's folder."""
    url, root = lab_server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    with screenshot_on_failure(page, "run-all"):
        page.goto(url)
        page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=120_000)
        page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=120_000)
        run_all_cells(page)
        save(page)
    yield page, root
    page.close()


def test_all_cells_run_without_error_and_show_curves_and_the_gallery(learner):
    page, root = learner
    with screenshot_on_failure(page, "outputs"):
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        tracebacks = [text for text in errors.all_inner_texts() if "Error" in text or "Traceback" in text]
        assert not tracebacks, tracebacks[0][:500]
        saved = nbformat.read(root / f"{NOTEBOOK}.ipynb", as_version=4)
        assert not [output for cell in saved.cells for output in cell.get("outputs", [])
                    if output.output_type == "error"]
        # The training curves and the other figures: plotly drew them as SVG, with points.
        kinds = page.locator(".jp-OutputArea-output").evaluate_all(
            "els => els.map(e => e.getAttribute('data-mime-type') || e.className + ':' + e.innerHTML.slice(0, 150))")
        assert page.locator(".js-plotly-plot .main-svg").count() >= 4, f"outputs shown: {kinds}"
        assert plotly_points(page) > 0
        # The gallery: its images are there and decoded.
        assert len(loaded_images(gallery_of(page))) >= 3


def test_the_gallery_slider_changes_the_images(learner):
    page, _ = learner
    with screenshot_on_failure(page, "gallery-slider"):
        gallery = gallery_of(page)
        before = loaded_images(gallery)
        # Move the "first image" slider one step with the keyboard, as a learner can.
        gallery.locator(".widget-slider").first.locator(".noUi-handle").focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function("([element, old]) => element.querySelector('img').src.slice(0, 200) !== old",
                               arg=[gallery.element_handle(), before[0]], timeout=30_000)
        assert loaded_images(gallery) != before


def test_the_recipe_lab_trains_a_changed_recipe(learner):
    page, root = learner
    with screenshot_on_failure(page, "recipe-lab"):
        lab = page.locator(".jp-OutputArea-output").filter(has=page.get_by_role("button", name="Train this recipe"))
        ema = lab.locator(".widget-checkbox", has_text="EMA of the weights").locator("input")
        assert ema.is_checked()  # mild has EMA
        half_life = lab.locator("tr", has_text="EMA of the weights: half-life").first
        assert "1ba" in half_life.inner_text()  # mild's half-life on tiny
        ema.uncheck()
        # The table follows the switch (the widget redraws it, so the row is looked up again each time).
        deadline = time.monotonic() + 30
        while "1ba" in half_life.inner_text():
            assert time.monotonic() < deadline, "the recipe table did not follow the EMA switch"
            page.wait_for_timeout(200)
        points_before = plotly_points(lab)
        lab.get_by_role("button", name="Train this recipe").click()
        lab.get_by_text("Predictions of this run").wait_for(timeout=180_000)
        assert plotly_points(lab) > points_before  # the new run's curves
        assert len(loaded_images(lab)) >= 3  # and its gallery
    # The run it trained is the edited recipe: mild without EMA, in a folder of its own.
    trained = [Run.load(path) for path in (root / "runs").iterdir() if path.name != "mild-tiny-seed17-2ba"]
    assert len(trained) == 1 and trained[0].status == "finished", trained
    assert trained[0].info["plan"]["ema_half_life"] is None and trained[0].info["plan"]["channels_last"]


def test_the_page_of_the_executed_notebook_shows_its_figures(browser, learner, tmp_path):
    """The notebook as the learner saved it in JupyterLab, written as a page and opened from disk."""
    _, root = learner
    notebook = root / f"{NOTEBOOK}.ipynb"
    book = nbformat.read(notebook, as_version=4)
    figures = sum("application/vnd.plotly.v1+json" in output.get("data", {})
                  for cell in book.cells for output in cell.get("outputs", []))
    assert figures >= 4
    page_file = write_page(notebook, tmp_path / f"{NOTEBOOK}.html")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    with screenshot_on_failure(page, "html-page"):
        page.goto(page_file.as_uri())
        page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {figures}",
                               timeout=30_000)
        assert page.locator(".segkit-plot").count() == figures
        assert plotly_points(page) > 0
        assert len(loaded_images(page, ".jp-OutputArea-output img")) >= 3  # the gallery's static images
        assert not [url for url in requests if not url.startswith(("file:", "data:"))], requests
    page.close()

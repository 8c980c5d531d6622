"""Google Colab, tested from here: the notebooks' badge and first cell, and figures drawn from HTML.

Colab itself cannot be reached from the test machine. What is tested is what can be: the install
cell does nothing outside Colab, and the figures' Colab HTML draws in Chromium with no network.
Only ``segkit.teaching.colab.in_colab`` is faked (to say "in Colab"); the rest runs as it does.
"""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from segkit.runs import Run
from segkit.teaching import colab
from segkit.teaching.notebooks import NOTEBOOKS, NOTEBOOKS_DIR, RESULTS_NOTEBOOK
from segkit.teaching.plots import PLOTLY_MIME, LiveCurves, mimebundle
from tests.conftest import REPO, subprocess_env

NAMES = [*NOTEBOOKS, RESULTS_NOTEBOOK]
#: How the cell tells Colab, written the same in segkit.teaching.colab.in_colab.
COLAB_TEST = '"google.colab" in sys.modules'


def repository() -> tuple[str, str]:
    """The repository and branch the README's Binder badge opens: ("segkit/segkit", "main")."""
    found = re.search(r"mybinder\.org/v2/gh/([\w.-]+/[\w.-]+)/([\w.-]+)\?", (REPO / "README.md").read_text())
    assert found, "the README has no Binder badge"
    return found.group(1), found.group(2)


def first_cells(name: str) -> tuple[str, str]:
    """The notebook's first markdown cell and first code cell."""
    book = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    markdown = next(cell for cell in book.cells if cell.cell_type == "markdown")
    code = next(cell for cell in book.cells if cell.cell_type == "code")
    return markdown.source, code.source


@pytest.mark.parametrize("name", NAMES)
def test_every_notebook_opens_in_colab_and_installs_the_kit_there(name):
    repo, branch = repository()
    markdown, setup = first_cells(name)
    assert f"(https://colab.research.google.com/github/{repo}/blob/{branch}/notebooks/{name}.ipynb)" in markdown
    assert setup == first_cells(NAMES[0])[1]  # one setup cell, the same in every notebook
    assert f'if {COLAB_TEST}:' in setup and COLAB_TEST in inspect.getsource(colab.in_colab)
    assert f"segkit[teaching] @ git+https://github.com/{repo}@{branch}" in setup  # the notebooks need the extra
    assert "output.enable_custom_widget_manager()" in setup


def test_the_install_cell_does_nothing_outside_colab(tmp_path):
    """Run as a fresh Python runs it: it prints nothing, imports nothing (so no pip), takes no time,
    and leaves no literal in the notebook's globals (``notebooks.start`` would take it for a parameter)."""
    _, setup = first_cells(NAMES[0])
    report = tmp_path / "report.json"
    harness = textwrap.dedent("""
        import json, sys, time
        source, report = sys.stdin.read(), sys.argv[1]
        before, namespace = set(sys.modules), {}
        start = time.perf_counter()
        exec(compile(source, "setup cell", "exec"), namespace)
        took = time.perf_counter() - start
        names = sorted(name for name in namespace if name != "__builtins__")
        with open(report, "w") as file:
            json.dump({"seconds": took, "imported": sorted(set(sys.modules) - before), "names": names}, file)
    """)
    done = subprocess.run([sys.executable, "-c", harness, str(report)], input=setup, capture_output=True,
                          text=True, timeout=60, env=subprocess_env())
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stdout + done.stderr
    result = json.loads(report.read_text())
    assert result["imported"] == [] and result["names"] == ["sys"]
    assert result["seconds"] < 0.05


def entry(epoch: int) -> dict:
    return {"epoch": epoch, "step": 2 * epoch, "wall_time": 1.5 * epoch, "miou": 3.0 + epoch, "train_loss": 1 / epoch,
            "val_loss": 1.2 / epoch, "images_per_second": 10.0 + epoch}


def test_outside_colab_the_bundles_are_plotly_json_and_text_only(monkeypatch):
    figure = {"data": [{"type": "scatter", "x": [1, 2], "y": [3, 4]}], "layout": {"title": {"text": "t"}}}
    assert not colab.in_colab()
    plain = mimebundle(figure, "a figure")
    assert set(plain) == {PLOTLY_MIME, "text/plain"}  # JupyterLab and papermill get what they always got
    monkeypatch.setattr(colab, "in_colab", lambda: True)
    in_colab = mimebundle(figure, "a figure")
    assert {key: in_colab[key] for key in plain} == plain
    assert in_colab["text/html"].startswith(colab.plotly_script())
    assert not mimebundle(figure, "a figure", with_plotly=False)["text/html"].startswith("<script type")


@pytest.fixture
def captured_displays(monkeypatch):
    """Live curves in Colab, drawn in an IPython shell: (first live drawing, a redraw, final figure)."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from traitlets.config import Config

    monkeypatch.setattr(colab, "in_colab", lambda: True)
    InteractiveShell.instance(config=Config({"HistoryManager": {"enabled": False}}))
    try:
        drawn = []
        curves = LiveCurves("mild-x", "mild", steps_per_epoch=2, interval=3600, live=True)
        for draw in (curves.show, lambda: curves("eval", entry(1)),
                     lambda: curves.finish(Run(folder=Path("/runs/mild-x"), history=[entry(1), entry(2), entry(3)],
                                               info={"recipe": {"name": "mild"}, "status": "finished"}))):
            with capture_output() as captured:  # the shell's display publisher, as a kernel's would send them
                draw()
            drawn.append(captured.outputs[-1].data)
        assert curves.redraws == 2
        yield drawn
    finally:
        InteractiveShell.clear_instance()


def test_live_curves_ship_plotly_js_once_and_with_the_final_figure(captured_displays):
    first, redraw, final = captured_displays
    script = colab.plotly_script()
    assert first["text/html"].startswith(script) and final["text/html"].startswith(script)
    assert script not in redraw["text/html"]  # it lands in the frame where the first drawing loaded plotly.js
    for bundle in (first, redraw, final):
        assert set(bundle) == {PLOTLY_MIME, "text/html", "text/plain"}


@pytest.fixture(scope="module")
def offline_page(browser):
    """A function that opens an HTML file in headless Chromium (the browser tests' own) with every
    non-file request blocked, and returns the page and the list of blocked URLs."""

    def open_offline(file: Path):
        context = browser.new_context()
        blocked: list[str] = []

        def only_files(route):
            if route.request.url.startswith("file:"):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", only_files)
        page = context.new_page()
        page.goto(file.as_uri())
        return page, blocked

    return open_offline


def write_page(path: Path, *fragments: str) -> Path:
    """An HTML page holding output fragments one after the other, as one Colab output frame would."""
    path.write_text("<!doctype html><html><head><meta charset='utf-8'></head><body>\n"
                    + "\n".join(fragments) + "\n</body></html>", encoding="utf-8")
    return path


def drawn_points(page) -> list[int]:
    """For each figure drawn on the page, how many marker points its SVG holds."""
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
    return page.eval_on_selector_all(
        ".js-plotly-plot", "plots => plots.map(plot => plot.querySelectorAll('.scatterlayer .point').length)")


def test_colab_figures_draw_in_chromium_with_no_network(offline_page, captured_displays, tmp_path):
    first, redraw, final = captured_displays
    # The final figure, alone in its frame: its own plotly.js draws it, three evaluations as points.
    page, blocked = offline_page(write_page(tmp_path / "final.html", final["text/html"]))
    traces = page.evaluate("() => document.querySelector('.js-plotly-plot').data.map(trace => trace.name)")
    assert traces == [trace["name"] for trace in final[PLOTLY_MIME]["data"]]
    points = drawn_points(page)
    assert len(points) == 1 and points[0] >= 3 + 3 + 3  # train loss, validation loss and mIoU markers
    assert blocked == []
    # The live area: the first drawing loads plotly.js, the redraw after it uses the same copy.
    page, blocked = offline_page(write_page(tmp_path / "live.html", first["text/html"], redraw["text/html"]))
    drawn_points(page)
    assert page.locator(".js-plotly-plot .main-svg").count() >= 2 and len(drawn_points(page)) == 2
    assert blocked == []


def test_a_redraw_without_plotly_js_asks_only_the_cdn(offline_page, captured_displays, tmp_path):
    """Had a redraw's frame no plotly.js, its script would load it from plotly's CDN (blocked here)."""
    _, redraw, _ = captured_displays
    page, blocked = offline_page(write_page(tmp_path / "redraw.html", redraw["text/html"]))
    page.wait_for_timeout(500)
    assert blocked == [colab.plotly_cdn_url()]
    assert page.locator(".js-plotly-plot").count() == 0

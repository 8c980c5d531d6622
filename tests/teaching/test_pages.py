"""Executed notebooks made readable without Jupyter: pictures beside figures, offline pages."""

from __future__ import annotations

import base64
import re

import nbformat
import plotly.graph_objects as go
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from segkit.teaching import pages
from segkit.teaching.plots import PLOTLY_MIME, mimebundle
from tests.conftest import run_segkit

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def executed_notebook() -> nbformat.NotebookNode:
    """A notebook as papermill leaves it: a figure, an emptied live area, a gallery, a lab, some text."""
    figure = mimebundle(go.Figure(go.Scatter(x=[1, 2], y=[3, 4], name="mIoU")), "curves")
    outputs = [
        new_output("display_data", data=figure),
        new_output("display_data", data={pages.WIDGET_MIME: {"model_id": "live"}, "text/plain": "Output()"}),
        new_output("display_data", data={pages.WIDGET_MIME: {"model_id": "gallery"}, "text/plain": "Gallery()",
                                         "text/html": "<img src='data:image/png;base64,AAAA'>"}),
        new_output("display_data", data={pages.WIDGET_MIME: {"model_id": "lab"}, "text/plain": "Lab()"}),
        new_output("stream", name="stdout", text="trained for 3 s\n"),
    ]
    state = {"live": {"model_name": "OutputModel", "state": {"outputs": []}},
             "gallery": {"model_name": "VBoxModel", "state": {}}, "lab": {"model_name": "VBoxModel", "state": {}}}
    book = new_notebook(cells=[new_markdown_cell("# A title"), new_code_cell("job.train()", outputs=outputs)])
    book.metadata["widgets"] = {WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}
    return book


def test_readable_offline_draws_figures_and_keeps_static_views():
    book = pages.readable_offline(executed_notebook())
    outputs = book.cells[1].outputs
    assert "widgets" not in book.metadata  # no widget state, so no script from a CDN
    assert len(outputs) == 4  # the emptied live area is gone
    figure = outputs[0]["data"]
    assert PLOTLY_MIME not in figure and "Plotly.newPlot('segkit-plot-1', [{" in figure["text/html"]
    assert '"name": "mIoU"' in figure["text/html"]
    assert outputs[1]["data"]["text/html"].startswith("<img") and pages.WIDGET_MIME not in outputs[1]["data"]
    assert outputs[2]["data"]["text/html"] == pages.INTERACTIVE_ONLY
    assert outputs[3]["text"] == "trained for 3 s\n"


def test_write_page_shares_plotly_and_fetches_nothing(tmp_path):
    notebook = tmp_path / "01_mild.ipynb"
    nbformat.write(executed_notebook(), notebook)
    page = pages.write_page(notebook)
    text = page.read_text()
    assert page == tmp_path / "01_mild.html" and (tmp_path / pages.PLOTLY_FILE).stat().st_size > 1_000_000
    assert "<script src='plotly.min.js'" in text and text.count("Plotly.newPlot(") == 1
    assert not re.findall(r"<script[^>]*\bsrc=[\"']https?:", text)
    assert "A title" in text and "trained for 3 s" in text


def test_add_pictures_gives_each_figure_a_png_once(tmp_path):
    notebook = tmp_path / "run.ipynb"
    nbformat.write(executed_notebook(), notebook)
    assert pages.add_pictures(notebook) == 1
    figure = nbformat.read(notebook, as_version=4).cells[1].outputs[0]["data"]
    assert base64.b64decode(figure["image/png"]).startswith(b"\x89PNG") and PLOTLY_MIME in figure
    assert pages.add_pictures(notebook) == 0  # already there: left as it is


def test_segkit_page_adds_pictures_and_writes_the_page(tmp_path):
    notebook = tmp_path / "out.ipynb"
    nbformat.write(executed_notebook(), notebook)
    done = run_segkit("page", str(notebook))
    assert done.returncode == 0, done.stderr
    assert f"{tmp_path / 'out.html'}: the page of {notebook} (1 picture(s) added to it)" in done.stdout
    assert "image/png" in nbformat.read(notebook, as_version=4).cells[1].outputs[0]["data"]
    missing = run_segkit("page", str(tmp_path / "none.ipynb"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "none.ipynb is not a notebook" in missing.stderr

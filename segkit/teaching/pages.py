"""Executed notebooks made readable without Jupyter: a picture beside each figure, and web pages.

``add_pictures`` gives every plotly figure of an executed notebook an ``image/png`` drawn by
``segkit.teaching.pictures``, so that GitHub and nbviewer show an image where they cannot draw plotly JSON
(JupyterLab shows the image until the pointer enters it, then draws the interactive figure).
It is done after execution, not in the kernel, so that a live JupyterLab session draws its figures
interactively at once.

``write_page`` makes a web page that a browser opens offline, to project, to hand out, to keep. A
browser cannot show an ``.ipynb``, and nbconvert's HTML leaves plotly figures as a line of text and
widgets as scripts that load from a CDN, so the page is nbconvert's after three changes to a copy of
the notebook:
    - each plotly figure becomes a ``<div>`` drawn by ``Plotly.newPlot`` from its own data, with
      plotly.js shared by all pages from one file beside them (``plotly.min.js``);
    - each widget shows its static fallback (a gallery's images, a table) where it has one, and a
      line saying it is interactive in JupyterLab where it has none;
    - the widget state is left out, so that no script is fetched from the network (and the
      template's require.js and MathJax, which the notebooks do not use, are dropped).
"""

from __future__ import annotations

import base64
import copy
import html
import json
import re
from pathlib import Path

import nbformat

from segkit.runs import atomic_write
from segkit.teaching import pictures
from segkit.teaching.plots import PLOTLY_MIME

#: plotly.js, shared by the pages of one folder.
PLOTLY_FILE = "plotly.min.js"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
PNG_MIME = "image/png"
#: What a page shows for a widget that has no static fallback.
INTERACTIVE_ONLY = ("<p class='segkit-widget'><i>An interactive widget: open the notebook in JupyterLab to use "
                    "it.</i></p>")


def add_pictures(notebook: str | Path) -> int:
    """Give each plotly figure of ``notebook`` (a file, rewritten in place) a PNG of itself; return how many.

    Figures that already have one (JupyterLab's plotly extension stores its own) are left as they are.
    """
    notebook = Path(notebook)
    book = nbformat.read(notebook, as_version=4)
    added = 0
    for cell in book.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if PLOTLY_MIME in data and PNG_MIME not in data:
                data[PNG_MIME] = base64.b64encode(pictures.png(data[PLOTLY_MIME])).decode()
                added += 1
    if added:
        text = nbformat.writes(book).encode()
        atomic_write(notebook, lambda file: file.write(text))
    return added


def plot_html(figure: dict, element_id: str) -> str:
    """A ``<div>`` and the script that draws ``figure`` (plotly JSON) in it with the page's plotly.js."""
    height = figure.get("layout", {}).get("height") or 420
    data = json.dumps(figure.get("data", [])).replace("</", "<\\/")  # no "</script>" inside the script
    layout = json.dumps(figure.get("layout", {})).replace("</", "<\\/")
    return (f"<div id='{element_id}' class='segkit-plot' style='height:{height}px'></div>\n"
            f"<script>Plotly.newPlot('{element_id}', {data}, {layout}, {{responsive: true}});</script>")


def readable_offline(book: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of an executed notebook whose outputs an offline page can show (see the module docstring)."""
    book = copy.deepcopy(book)
    state = book.metadata.pop("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    count = 0
    for cell in book.cells:
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if PLOTLY_MIME in data:
                count += 1
                data["text/html"] = plot_html(data.pop(PLOTLY_MIME), f"segkit-plot-{count}")
                data.pop(PNG_MIME, None)  # the page draws the figure itself
            elif WIDGET_MIME in data:
                model = state.get(data.pop(WIDGET_MIME).get("model_id"), {})
                if model.get("model_name") == "OutputModel" and not model.get("state", {}).get("outputs"):
                    continue  # an emptied live area (segkit.teaching.plots.LiveCurves): nothing to show
                data.setdefault("text/html", INTERACTIVE_ONLY)
            kept.append(output)
        if "outputs" in cell:
            cell.outputs = kept
    return book


def page_html(notebook: str | Path, plotly_src: str = PLOTLY_FILE) -> str:
    """An executed notebook as one HTML page that loads plotly.js from ``plotly_src``."""
    from nbconvert import HTMLExporter

    book = readable_offline(nbformat.read(notebook, as_version=4))
    exporter = HTMLExporter(template_name="lab", embed_images=True)
    body, _ = exporter.from_notebook_node(book, resources={"metadata": {"name": Path(notebook).stem}})
    # The template loads require.js and MathJax from a CDN: the notebooks use neither (no math), and
    # require.js would make plotly.js register as an AMD module instead of window.Plotly.
    body = re.sub(r"<script[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>", "", body)
    # Remote pictures (the "Open in Colab" badge) become their alt text: the page loads nothing from the network.
    body = re.sub(r"<img[^>]*\bsrc=[\"']https?://[^>]*\balt=[\"']([^\"']*)[\"'][^>]*>", r"\1", body)
    body = re.sub(r"<img[^>]*\balt=[\"']([^\"']*)[\"'][^>]*\bsrc=[\"']https?://[^>]*>", r"\1", body)
    script = f"<script src='{html.escape(plotly_src)}' charset='utf-8'></script>"
    return body.replace("<head>", f"<head>\n{script}", 1)


def write_page(notebook: str | Path, page: str | Path | None = None) -> Path:
    """Write ``notebook`` (executed) as an HTML page beside it (or at ``page``), with ``plotly.min.js``
    written once into the page's folder. Returns the page's path."""
    notebook = Path(notebook)
    page = Path(page) if page else notebook.with_suffix(".html")
    plotly_file = page.parent / PLOTLY_FILE
    if not plotly_file.is_file():
        from plotly.offline import get_plotlyjs

        script = get_plotlyjs().encode()
        atomic_write(plotly_file, lambda file: file.write(script))
    text = page_html(notebook).encode()
    atomic_write(page, lambda file: file.write(text))
    return page

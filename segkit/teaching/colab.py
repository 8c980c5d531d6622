"""Google Colab: whether the kernel runs there, and figures as HTML that Colab draws.

Colab does not draw plotly's MIME type (``application/vnd.plotly.v1+json``), which JupyterLab
draws and papermill stores; it draws ``text/html``. So in Colab ``segkit.teaching.plots.mimebundle`` adds
the figure as HTML beside the plotly JSON: a ``<div>`` and a script that calls ``Plotly.newPlot``.

plotly.js comes with the HTML, from plotly's own package (``plotly.offline.get_plotlyjs``, the
version plotly.py was built with), so a figure draws with no network. Colab shows each cell's
outputs in a frame of their own, so plotly.js cannot be loaded once per session for every
cell: each figure carries it (about 5 MB), except a redraw of live curves inside the frame where
their first drawing loaded it already. Should that frame have no ``Plotly`` after all, the
script loads the same version from plotly's CDN, as plotly's own Colab renderer does.

The notebooks' first code cell installs segkit in Colab, so it cannot import segkit: it repeats
``in_colab``'s one test in plain Python (tests/system/test_colab.py checks that they agree).
"""

from __future__ import annotations

import functools
import sys
import uuid
from typing import Any


def in_colab() -> bool:
    """True in a Google Colab kernel, which imports ``google.colab`` as it starts."""
    return "google.colab" in sys.modules


@functools.cache
def plotly_script() -> str:
    """plotly.js, from plotly's package, as one ``<script>`` element."""
    from plotly.offline import get_plotlyjs

    return f"<script type='text/javascript'>{get_plotlyjs()}</script>"


def plotly_cdn_url() -> str:
    """Where plotly's CDN serves the plotly.js of the installed plotly."""
    from plotly.offline import get_plotlyjs_version

    return f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"


def figure_html(figure: dict[str, Any], with_plotly: bool = True) -> str:
    """The figure (plotly JSON: ``{"data": [...], "layout": {...}}``) as HTML that draws it.

    Args:
        figure: the figure's data and layout.
        with_plotly: include plotly.js; False for a redraw in an output frame that loaded it already.

    Returns:
        plotly.js (if asked), then a ``<div>`` with a unique id and the script that draws into it.
    """
    from plotly.io.json import to_json_plotly

    element = f"segkit-plot-{uuid.uuid4().hex}"
    height = figure.get("layout", {}).get("height") or 420
    # plotly's encoder takes numpy arrays too; "<\/" keeps "</script>" out of the script.
    data = to_json_plotly(figure.get("data", [])).replace("</", "<\\/")
    layout = to_json_plotly(figure.get("layout", {})).replace("</", "<\\/")
    draw = (f"function draw() {{ Plotly.newPlot('{element}', {data}, {layout}, {{responsive: true}}); }}\n"
            "if (window.Plotly) { draw(); } else {\n"
            "  const script = document.createElement('script');\n"
            f"  script.src = '{plotly_cdn_url()}';\n"
            "  script.onload = draw;\n"
            "  document.head.appendChild(script);\n"
            "}")
    return ((plotly_script() + "\n" if with_plotly else "")
            + f"<div id='{element}' class='segkit-plot' style='height:{height}px'></div>\n"
            + f"<script type='text/javascript'>\n(() => {{\n{draw}\n}})();\n</script>")

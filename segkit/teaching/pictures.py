"""Static pictures of plotly figures, drawn with matplotlib from the figure's own data.

A notebook's plotly figure is stored as ``application/vnd.plotly.v1+json``, which JupyterLab draws
and GitHub, nbviewer and nbconvert show as one line of text. ``png(figure)`` draws the same traces
with matplotlib (no browser, no kaleido), so a figure's display bundle can carry an ``image/png``
beside its plotly JSON: JupyterLab still prefers the interactive figure, the others show the image.

It covers what segkit's figures use: scatter (lines, markers, text), bar, heatmap, contour and
image traces on any grid of subplots, horizontal and vertical line shapes, annotations (subplot
titles included), axis titles, reversed and fixed ranges, and equal aspect.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Sequence
from numbers import Number
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

#: plotly's default trace colours, used for traces that name none.
PLOTLY_COLORWAY = ("#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3", "#FF6692", "#B6E880",
                   "#FF97FF", "#FECB52")
_DASHES = {"dash": (0, (5, 3)), "dot": (0, (1, 2)), "dashdot": (0, (5, 2, 1, 2)), "solid": "-"}
_DPI = 80


def color(value: Any) -> Any:
    """A plotly colour (``#rrggbb``, ``rgb(...)``, ``rgba(...)``, a name, or a list of them) for matplotlib.

    Example:
        >>> color("rgba(255, 0, 0, 0.5)")
        (1.0, 0.0, 0.0, 0.5)
    """
    if isinstance(value, (list, tuple, np.ndarray)) and not isinstance(value, str):
        return [color(item) for item in value]
    if isinstance(value, str):
        found = re.fullmatch(r"rgba?\(([^)]*)\)", value.replace(" ", ""))
        if found:
            parts = [float(part) for part in found.group(1).split(",")]
            return (*(part / 255 for part in parts[:3]), parts[3] if len(parts) == 4 else 1.0)
    return value


def decoded(value: Any) -> Any:
    """Plotly JSON with its typed arrays (``{"dtype": "f8", "bdata": base64, "shape": "2, 3"}``, how
    plotly 6+ stores numpy arrays) decoded to numpy arrays, everything else as it was."""
    if isinstance(value, dict):
        if "bdata" in value and "dtype" in value:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
            shape = value.get("shape")
            return array.reshape([int(size) for size in str(shape).split(",")]) if shape else array
        return {key: decoded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decoded(item) for item in value]
    return value


def _text(value: Any) -> str:
    """The text of a plotly title, which is a string or ``{"text": ...}``; HTML line breaks become newlines."""
    if isinstance(value, dict):
        value = value.get("text")
    return re.sub(r"<br\s*/?>", "\n", str(value)) if value else ""


def _axis_key(reference: str) -> str:
    """The layout key of an axis reference: ``"x"`` -> ``"xaxis"``, ``"y3"`` -> ``"yaxis3"``."""
    return f"{reference[0]}axis{reference[1:]}"


def _cmap(scale: Any) -> Any:
    """A matplotlib colormap for a plotly colorscale: a name or a list of ``[position, colour]``."""
    if isinstance(scale, str):
        return scale.lower() if scale.lower() in ("viridis", "cividis", "greys", "blues", "reds") else "viridis"
    if isinstance(scale, Sequence) and scale:
        return LinearSegmentedColormap.from_list("plotly", [(stop, color(value)) for stop, value in scale])
    return "viridis"


class _Drawing:
    """One plotly figure (as JSON) being drawn on one matplotlib figure."""

    def __init__(self, figure: dict[str, Any], width: float):
        self.layout = figure.get("layout", {})
        self.traces = decoded(list(figure.get("data", [])))
        # The legend goes below the plot area, in rows of four: room for it is added at the bottom.
        entries = sum(1 for trace in self.traces if trace.get("name") and trace.get("showlegend", True))
        self.legend_height = 18 * -(-entries // 4) + 8 if self.layout.get("showlegend", True) else 0
        height = float(self.layout.get("height") or 420) + self.legend_height
        self.margin = {"l": 60, "r": 20, "t": 70, "b": 50, **self.layout.get("margin", {})}
        self.margin["b"] += self.legend_height
        self.canvas = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
        FigureCanvasAgg(self.canvas)
        self.axes: dict[tuple[str, str], Any] = {}

    def axes_for(self, x_ref: str, y_ref: str):
        """The matplotlib axes of a plotly (x axis, y axis) pair, placed at the axes' domains."""
        if (x_ref, y_ref) not in self.axes:
            x_domain = self.layout.get(_axis_key(x_ref), {}).get("domain", [0, 1])
            y_domain = self.layout.get(_axis_key(y_ref), {}).get("domain", [0, 1])
            # plotly's domains are fractions of the plot area inside the margins: map them to the figure.
            margin = self.margin
            width, height = (size * _DPI for size in self.canvas.get_size_inches())
            left, bottom = margin["l"] / width, margin["b"] / height
            area_w, area_h = 1 - left - margin["r"] / width, 1 - bottom - margin["t"] / height
            box = [left + area_w * x_domain[0], bottom + area_h * y_domain[0],
                   area_w * (x_domain[1] - x_domain[0]), area_h * (y_domain[1] - y_domain[0])]
            self.axes[(x_ref, y_ref)] = self.canvas.add_axes(box)
        return self.axes[(x_ref, y_ref)]

    def draw(self) -> None:
        bars_per_axes: dict[tuple[str, str], list[dict]] = {}
        for index, trace in enumerate(self.traces):
            key = (trace.get("xaxis", "x"), trace.get("yaxis", "y"))
            axes = self.axes_for(*key)
            default = PLOTLY_COLORWAY[index % len(PLOTLY_COLORWAY)]
            kind = trace.get("type", "scatter")
            if kind == "bar":
                bars_per_axes.setdefault(key, []).append({**trace, "_color": default})
            elif kind == "scatter":
                self.scatter(axes, trace, default)
            elif kind in ("heatmap", "contour"):
                self.grid(axes, trace, kind)
            elif kind == "image":
                axes.imshow(np.asarray(trace["z"], dtype=np.uint8))
        for key, bars in bars_per_axes.items():
            self.bars(self.axes[key], bars)
        for (x_ref, y_ref), axes in self.axes.items():
            self.style(axes, self.layout.get(_axis_key(x_ref), {}), self.layout.get(_axis_key(y_ref), {}))
        self.shapes()
        self.annotations()
        title = _text(self.layout.get("title"))
        if title:
            self.canvas.suptitle(title, x=0.01, ha="left", fontsize=12)
        handles = [(h, label) for axes in self.axes.values()
                   for h, label in zip(*axes.get_legend_handles_labels(), strict=True) if not label.startswith("_")]
        if handles and self.layout.get("showlegend", True):
            self.canvas.legend(*zip(*handles, strict=True), loc="lower center", ncol=min(4, len(handles)),
                               fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.0))

    def scatter(self, axes, trace: dict[str, Any], default: str) -> None:
        x, y = trace.get("x"), trace.get("y")
        if y is None:
            return
        x = list(range(len(y))) if x is None else x
        mode = trace.get("mode", "lines+markers" if len(y) < 20 else "lines")
        line, marker = trace.get("line", {}), trace.get("marker", {})
        label = trace.get("name") if trace.get("showlegend", True) and trace.get("name") else "_hidden"
        alpha = trace.get("opacity", 1.0)
        line_color = color(line.get("color") or (marker.get("color") if isinstance(marker.get("color"), str)
                                                 else None) or default)
        if "lines" in mode:
            axes.plot(x, y, color=line_color, linestyle=_DASHES.get(line.get("dash", "solid"), "-"),
                      linewidth=line.get("width", 2) * 0.75, alpha=alpha, label=label)
            label = "_hidden"
        if "markers" in mode:
            marker_color = color(marker.get("color", line_color))
            sizes = (np.asarray(marker.get("size", 6), dtype=float) * 0.75) ** 2  # plotly: diameter, matplotlib: area
            axes.scatter(x, y, s=sizes, c=marker_color if isinstance(marker_color, list) else [marker_color],
                         alpha=alpha, label=label, zorder=3)
        if "text" in mode:
            for x_value, y_value, text in zip(x, y, trace.get("text", []), strict=False):
                axes.annotate(str(text), (x_value, y_value), textcoords="offset points", xytext=(0, 6),
                              ha="center", fontsize=8)

    def grid(self, axes, trace: dict[str, Any], kind: str) -> None:
        z = np.asarray(trace["z"], dtype=float)
        x = np.asarray(trace.get("x", np.arange(z.shape[1])))
        y = np.asarray(trace.get("y", np.arange(z.shape[0])))
        cmap = _cmap(trace.get("colorscale"))
        if kind == "contour" and np.issubdtype(x.dtype, np.number):
            axes.contourf(x, y, z, levels=15, cmap=cmap)
            return
        numeric = np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.number)
        axes.pcolormesh(x if numeric else np.arange(z.shape[1]), y if numeric else np.arange(z.shape[0]), z,
                        cmap=cmap, shading="nearest")
        if not numeric:
            axes.set_xticks(range(len(x)), [str(item) for item in x], fontsize=8)
            axes.set_yticks(range(len(y)), [str(item) for item in y], fontsize=8)
        texts = trace.get("text")
        for row, values in enumerate([] if texts is None else texts):
            for column, text in enumerate(values):
                axes.text(column, row, _text(text), ha="center", va="center", fontsize=7)

    def bars(self, axes, bars: list[dict[str, Any]]) -> None:
        grouped = self.layout.get("barmode", "group") == "group" and len(bars) > 1
        categories: list[Any] = []
        for bar in bars:
            categories += [value for value in bar.get("x", []) if value not in categories]
        numeric = all(isinstance(value, Number) for value in categories)
        for index, bar in enumerate(bars):
            x = bar.get("x", [])
            positions = np.asarray(x, dtype=float) if numeric else np.array([categories.index(v) for v in x], float)
            width = bar.get("width") or (0.8 / len(bars) if grouped else 0.8)
            if isinstance(width, list):
                width = width[0]
            if grouped:
                positions = positions + (index - (len(bars) - 1) / 2) * width
            marker = bar.get("marker", {})
            label = bar.get("name") if bar.get("showlegend", True) and bar.get("name") else "_hidden"
            axes.bar(positions, bar.get("y", []), width=width, color=color(marker.get("color", bar["_color"])),
                     alpha=bar.get("opacity", 1.0), label=label)
        if not numeric:
            axes.set_xticks(range(len(categories)), [str(value) for value in categories], fontsize=8,
                            rotation=20 if len(categories) > 4 else 0)

    def style(self, axes, x_axis: dict[str, Any], y_axis: dict[str, Any]) -> None:
        axes.set_xlabel(_text(x_axis.get("title")), fontsize=9)
        axes.set_ylabel(_text(y_axis.get("title")), fontsize=9)
        axes.tick_params(labelsize=8)
        axes.grid(alpha=0.3)
        for axis, settings in ((axes.xaxis, x_axis), (axes.yaxis, y_axis)):
            limits = axes.set_xlim if axis is axes.xaxis else axes.set_ylim
            if settings.get("range") and all(isinstance(v, Number) for v in settings["range"]):
                limits(*settings["range"])
            if settings.get("type") == "log":
                (axes.set_xscale if axis is axes.xaxis else axes.set_yscale)("log")
        if y_axis.get("rangemode") == "tozero":
            axes.set_ylim(bottom=0)
        if y_axis.get("autorange") == "reversed":
            axes.invert_yaxis()
        if y_axis.get("scaleanchor") or x_axis.get("scaleanchor"):
            axes.set_aspect("equal", adjustable="datalim")

    def shapes(self) -> None:
        for shape in self.layout.get("shapes", []):
            if shape.get("type") != "line":
                continue
            x_ref = shape.get("xref", "x").split(" ")[0]
            y_ref = shape.get("yref", "y").split(" ")[0]
            axes = self.axes.get((x_ref if x_ref != "paper" else "x", y_ref if y_ref != "paper" else "y"))
            if axes is None:
                continue
            line = shape.get("line", {})
            style = {"color": color(line.get("color", "#555")), "linestyle": _DASHES.get(line.get("dash"), "-"),
                     "linewidth": 1}
            if shape.get("y0") == shape.get("y1") and y_ref != "paper":
                axes.axhline(shape["y0"], **style)
            elif shape.get("x0") == shape.get("x1") and x_ref != "paper":
                axes.axvline(shape["x0"], **style)

    def annotations(self) -> None:
        width, height = (size * _DPI for size in self.canvas.get_size_inches())
        margin = self.margin
        for note in self.layout.get("annotations", []):
            text = _text(note.get("text"))
            if note.get("xref") == "paper" and note.get("yref") == "paper":
                left, bottom = margin["l"] / width, margin["b"] / height
                x = left + (1 - left - margin["r"] / width) * note["x"]
                y = bottom + (1 - bottom - margin["t"] / height) * note["y"]
                self.canvas.text(x, y + 0.01, text, ha="center", va="bottom", fontsize=10)
                continue
            x_ref = note.get("xref", "x").split(" ")[0]
            y_ref = note.get("yref", "y").split(" ")[0]
            axes = self.axes.get((x_ref, y_ref)) or next(iter(self.axes.values()), None)
            if axes is not None and note.get("x") is not None and note.get("y") is not None:
                transform = axes.get_yaxis_transform() if "domain" in note.get("xref", "") else axes.transData
                axes.text(note["x"], note["y"], text, fontsize=8, transform=transform, ha="right", va="bottom")

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.canvas.savefig(buffer, format="png", dpi=_DPI)
        return buffer.getvalue()


def png(figure: Any, width: float = 900) -> bytes:
    """The figure drawn with matplotlib, as PNG bytes.

    Args:
        figure: a ``plotly.graph_objects.Figure`` or its JSON (``{"data": [...], "layout": {...}}``).
        width: the picture's width in pixels (its height is the figure's ``layout.height``, default 420).
    """
    if hasattr(figure, "to_plotly_json"):
        figure = figure.to_plotly_json()
    drawing = _Drawing(figure, width)
    drawing.draw()
    return drawing.png()

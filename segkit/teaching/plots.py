"""Plotly figures of runs, and live training curves that survive a headless (papermill) run.

Figures are built from ``segkit.runs.Run`` histories (``metrics.json``), so the same functions
draw a run while it trains, after it finished, and in the summary page.

``LiveCurves`` is how a notebook watches training. Two facts shape it:
    - JupyterLab's plotly renderer draws a figure once and ignores later ``update_display_data``
      for it, and a ``FigureWidget`` executed headless keeps only its empty initial state (plus
      plotly's 5 MB widget bundle) in the saved notebook;
    - an ``ipywidgets.Output`` that is cleared and given a new figure re-renders in JupyterLab,
      and a plain ``application/vnd.plotly.v1+json`` output is stored as it is by papermill.
So while training, the curves are redrawn inside an ``Output`` (at every evaluation and at most
every few seconds otherwise); at the end the ``Output`` is emptied and the final figure, built
from the run's ``metrics.json``, is displayed as a plain plotly output that stays in the cell.

Headless (a kernel started with ``SEGKIT_HEADLESS=1``, as ``segkit notebooks`` and
``papermill --engine segkit`` start theirs) nobody watches the redraws, and every output captured
in an ``Output`` costs the headless client a message on the kernel's shell channel
(``segkit.teaching.headless`` says why that matters): there the curves draw only their final figure.

In Google Colab, which draws HTML but not plotly's MIME type, each bundle also holds the figure as
HTML with plotly.js (``segkit.teaching.colab``); everywhere else the bundles are plotly JSON and text only.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from segkit import recipes
from segkit.runs import Run, history_series
from segkit.teaching import colab

#: Recipe colours, given in the order of ``segkit.recipes.RECIPES`` and cycled for any number of recipes.
PALETTE = ("#636efa", "#00a86b", "#ff9f1c", "#e63946", "#17becf", "#8c564b", "#bcbd22", "#7f7f7f")
#: One colour per named recipe, the same in every figure.
RECIPE_COLORS = {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(recipes.RECIPES)}
OTHER_COLOR = "#8e44ad"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
#: Set to "1" in a kernel that runs headless: ``LiveCurves`` then draws only its final figure.
HEADLESS_VARIABLE = "SEGKIT_HEADLESS"


def recipe_color(name: str) -> str:
    return RECIPE_COLORS.get(name, OTHER_COLOR)


def mimebundle(figure: go.Figure | dict[str, Any], text: str, with_plotly: bool = True) -> dict[str, Any]:
    """A raw display bundle: the figure as plotly JSON, and a line of text for other viewers.

    In Google Colab, which does not draw plotly JSON, also the figure as HTML (``segkit.teaching.colab``);
    ``with_plotly`` False leaves plotly.js out of that HTML, for a redraw where it is loaded already.
    """
    data = figure.to_plotly_json() if isinstance(figure, go.Figure) else figure
    plot = {"data": data["data"], "layout": data["layout"]}
    bundle = {PLOTLY_MIME: plot, "text/plain": text}
    if colab.in_colab():
        bundle["text/html"] = colab.figure_html(plot, with_plotly)
    return bundle


def comparison_figure(runs: Sequence[Run], title: str = "mIoU of each run", by_recipe: bool = False) -> go.Figure:
    """Validation mIoU against training time and against epochs, one line per run.

    With ``by_recipe`` the legend has one entry per recipe (for several seeds of each).
    """
    figure = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                           subplot_titles=("mIoU against training time", "mIoU against epochs"))
    named = set()
    for run in runs:
        epochs, seconds, miou = run.series("miou")
        name = run.recipe if by_recipe else run.name
        common = {"name": name, "legendgroup": name, "mode": "lines+markers", "marker": {"size": 4},
                  "line": {"color": recipe_color(run.recipe)}, "hovertext": run.name}
        figure.add_trace(go.Scatter(x=seconds, y=miou, showlegend=name not in named, **common), row=1, col=1)
        figure.add_trace(go.Scatter(x=epochs, y=miou, showlegend=False, **common), row=1, col=2)
        named.add(name)
    figure.update_xaxes(title_text="training time (s)", row=1, col=1)
    figure.update_xaxes(title_text="epoch", row=1, col=2)
    figure.update_yaxes(title_text="validation mIoU (%)", row=1, col=1)
    figure.update_layout(title=title, height=380, margin={"t": 70, "b": 40, "l": 60, "r": 20},
                         template="plotly_white", legend={"orientation": "h", "y": -0.2})
    return figure


class CurveData:
    """What the live curves show: per-step training loss and the evaluation history.

    ``add`` takes the events of ``segkit.train(spec, on_progress=...)``.
    """

    def __init__(self, steps_per_epoch: int | None = None):
        self.steps_per_epoch = steps_per_epoch
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.history: list[dict[str, Any]] = []

    def add(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "batch":
            if math.isfinite(data["train_loss"]):
                self.steps.append(data["step"])
                self.losses.append(data["train_loss"])
        elif kind == "eval":
            self.history.append(data)

    def step_epochs(self) -> list[float]:
        """The training steps in epochs (fractional), from the known steps per epoch."""
        per_epoch = self.steps_per_epoch
        if per_epoch is None and self.history and self.history[-1]["epoch"]:
            per_epoch = self.history[-1]["step"] / self.history[-1]["epoch"]
        return [step / per_epoch for step in self.steps] if per_epoch else [float(s) for s in self.steps]


def training_layout(title: str) -> dict[str, Any]:
    """The layout of the training-curves figure (three panels), as plotly JSON."""
    figure = make_subplots(rows=1, cols=3, horizontal_spacing=0.08,
                           subplot_titles=("loss", "validation mIoU (%)", "throughput (images/s)"))
    figure.update_xaxes(title_text="epoch", row=1, col=1)
    figure.update_xaxes(title_text="training time (s)", row=1, col=2)
    figure.update_xaxes(title_text="epoch", row=1, col=3)
    figure.update_yaxes(rangemode="tozero", row=1, col=3)
    figure.update_layout(title=title, height=360, margin={"t": 70, "b": 40, "l": 50, "r": 20},
                         template="plotly_white", legend={"orientation": "h", "y": -0.25})
    return figure.to_plotly_json()["layout"]


def training_figure(data: CurveData, name: str, recipe: str, reference: Run | None = None,
                    layout: dict[str, Any] | None = None) -> dict[str, Any]:
    """The training curves as plotly JSON: loss, mIoU (with a reference run dashed) and throughput.

    Built as plain dicts (no validation), so redrawing it during training costs well under a millisecond
    once ``layout`` (from ``training_layout``) is made.
    """
    color = recipe_color(recipe)
    epochs, seconds, miou = history_series(data.history, "miou")
    traces: list[dict[str, Any]] = []
    if data.steps:
        traces.append({"type": "scatter", "x": data.step_epochs(), "y": data.losses,
                       "name": "train loss (per step)", "mode": "lines", "line": {"color": color, "width": 1},
                       "opacity": 0.35, "xaxis": "x", "yaxis": "y"})
    for key, label, dash in (("train_loss", "train loss (mean)", "solid"),
                             ("val_loss", "validation loss", "dot")):
        x, _, y = history_series(data.history, key)
        traces.append({"type": "scatter", "x": x, "y": y, "name": label, "mode": "lines+markers",
                       "line": {"color": color, "dash": dash}, "marker": {"size": 4},
                       "xaxis": "x", "yaxis": "y"})
    if reference is not None and reference.history:
        _, ref_seconds, ref_miou = reference.series("miou")
        traces.append({"type": "scatter", "x": ref_seconds, "y": ref_miou,
                       "name": f"{reference.name} (reference)", "mode": "lines",
                       "line": {"color": recipe_color(reference.recipe), "dash": "dash"},
                       "xaxis": "x2", "yaxis": "y2"})
    traces.append({"type": "scatter", "x": seconds, "y": miou, "name": f"{name} mIoU",
                   "mode": "lines+markers", "line": {"color": color}, "marker": {"size": 5},
                   "xaxis": "x2", "yaxis": "y2"})
    x, _, speed = history_series(data.history, "images_per_second")
    traces.append({"type": "bar", "x": x, "y": speed, "name": "images/s", "marker": {"color": color},
                   "opacity": 0.6, "xaxis": "x3", "yaxis": "y3"})
    layout = copy.deepcopy(layout) if layout is not None else training_layout(name)
    last = data.history[-1] if data.history else None
    status = f"{name}: epoch {last['epoch']:g}, mIoU {last['miou']:.2f}" if last else f"{name}: starting"
    layout["title"] = {"text": status}
    return {"data": traces, "layout": layout}


class LiveCurves:
    """Training curves that redraw during training and stay, with their final data, in the notebook.

    Pass the object as ``on_progress`` to ``segkit.train`` (it is callable), after ``show()``;
    call ``finish(run)`` when training ends.

    Args:
        name: the run's name (figure title).
        recipe: the recipe's name (picks the colour).
        reference: a run drawn dashed in the mIoU panel (the baseline), or None.
        steps_per_epoch: to place per-step losses in epochs.
        interval: seconds between redraws on training steps (evaluations always redraw).
        live: redraw while training; by default, unless the kernel runs headless (``HEADLESS_VARIABLE``).
    """

    def __init__(self, name: str, recipe: str, reference: Run | None = None,
                 steps_per_epoch: int | None = None, interval: float = 2.0, live: bool | None = None):
        import ipywidgets

        self.name, self.recipe, self.reference, self.interval = name, recipe, reference, interval
        self.live = os.environ.get(HEADLESS_VARIABLE) != "1" if live is None else live
        self.data = CurveData(steps_per_epoch)
        self.output = ipywidgets.Output() if self.live else None
        self.redraws = 0
        self._layout = training_layout(name)
        self._last_draw = -math.inf

    def show(self) -> None:
        """Display the live area (in a notebook cell, or inside an Output being captured)."""
        from IPython.display import display

        if self.live:
            display(self.output)
            self._draw()

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        self.data.add(kind, data)
        if self.live and (kind == "eval" or time.monotonic() - self._last_draw >= self.interval):
            self._draw()

    def figure(self) -> dict[str, Any]:
        return training_figure(self.data, self.name, self.recipe, self.reference, self._layout)

    def _draw(self) -> None:
        from IPython.display import display

        self._last_draw = time.monotonic()
        self.redraws += 1
        with self.output:
            self.output.clear_output(wait=True)
            # plotly.js goes with the first drawing only: later ones land in the same output frame.
            display(mimebundle(self.figure(), f"training curves of {self.name} (live)", with_plotly=self.redraws == 1),
                    raw=True)

    def finish(self, run: Run) -> dict[str, Any]:
        """Replace the live area by the final figure, built from the run's history (metrics.json).

        Per-step losses seen in this session are kept. Returns the displayed plotly JSON.
        """
        from IPython.display import display

        if self.live:
            self.output.clear_output()
        self.data.history = list(run.history)
        final = self.figure()
        miou = run.final.get("miou", math.nan)
        count = len(run.history)
        display(mimebundle(final, f"training curves of {run.name}: {count} evaluation{'s' * (count != 1)}, "
                                  f"final mIoU {miou:.2f}"), raw=True)
        return final

"""Figures from run histories, and the live curves' data and redraw rules."""

from __future__ import annotations

import math
from pathlib import Path

from segkit.runs import Run
from segkit.teaching.plots import (
    HEADLESS_VARIABLE,
    PLOTLY_MIME,
    CurveData,
    LiveCurves,
    comparison_figure,
    mimebundle,
    training_figure,
)


def entry(epoch: float, step: int, seconds: float, miou: float) -> dict:
    return {"epoch": epoch, "step": step, "wall_time": seconds, "miou": miou, "pixel_accuracy": 2 * miou,
            "train_loss": 1 / epoch, "val_loss": 1.5 / epoch, "images_per_second": 10.0 + epoch}


def fake_run(name: str, recipe: str, history: list[dict]) -> Run:
    return Run(folder=Path("/runs") / name, info={"recipe": {"name": recipe}, "status": "finished"},
               history=history)


def traces_by_name(figure: dict) -> dict:
    return {trace["name"]: trace for trace in figure["data"]}


def test_curve_data_keeps_steps_and_evaluations():
    data = CurveData(steps_per_epoch=4)
    data.add("batch", {"step": 1, "epoch": 0, "wall_time": 0.1, "train_loss": 2.0})
    data.add("batch", {"step": 2, "epoch": 0, "wall_time": 0.2, "train_loss": math.nan})  # not drawable
    data.add("batch", {"step": 6, "epoch": 1, "wall_time": 0.6, "train_loss": 1.0})
    data.add("eval", entry(1, 4, 0.5, 3.0))
    assert data.steps == [1, 6] and data.losses == [2.0, 1.0] and len(data.history) == 1
    assert data.step_epochs() == [0.25, 1.5]
    data.steps_per_epoch = None  # inferred from the last evaluation: 4 steps in 1 epoch
    assert data.step_epochs() == [0.25, 1.5]


def test_training_figure_holds_the_history_and_the_reference():
    data = CurveData(steps_per_epoch=2)
    data.add("batch", {"step": 1, "epoch": 0, "wall_time": 0.1, "train_loss": 2.0})
    data.history = [entry(1, 2, 1.0, 5.0), entry(2, 4, 2.0, 7.5)]
    baseline = fake_run("baseline-cpu-seed17", "baseline", [entry(1, 2, 1.5, 4.0)])
    figure = training_figure(data, "hot-cpu-seed17", "hot", reference=baseline)
    traces = traces_by_name(figure)
    miou = traces["hot-cpu-seed17 mIoU"]
    assert miou["x"] == [1.0, 2.0] and miou["y"] == [5.0, 7.5] and miou["xaxis"] == "x2"
    assert traces["baseline-cpu-seed17 (reference)"]["y"] == [4.0]
    assert traces["validation loss"]["y"] == [1.5, 0.75] and traces["images/s"]["y"] == [11.0, 12.0]
    assert traces["train loss (per step)"]["x"] == [0.5]
    assert figure["layout"]["title"]["text"] == "hot-cpu-seed17: epoch 2, mIoU 7.50"


def test_run_and_comparison_figures():
    runs = [fake_run("baseline-x", "baseline", [entry(1, 2, 1.0, 4.0)]),
            fake_run("mild-x", "mild", [entry(1, 2, 0.8, 3.0), entry(2, 4, 1.6, 4.5)])]
    figure = comparison_figure(runs)
    assert [trace.name for trace in figure.data] == ["baseline-x", "baseline-x", "mild-x", "mild-x"]
    assert list(figure.data[2].x) == [0.8, 1.6] and list(figure.data[3].x) == [1, 2]  # time, then epochs
    assert list(figure.data[3].y) == [3.0, 4.5]
    seeds = [*runs, fake_run("mild-y", "mild", [entry(1, 2, 0.9, 3.5)])]
    by_recipe = comparison_figure(seeds, by_recipe=True)  # several seeds: one legend entry per recipe
    assert [trace.name for trace in by_recipe.data if trace.showlegend is not False] == ["baseline", "mild"]
    assert [trace.hovertext for trace in by_recipe.data[::2]] == ["baseline-x", "mild-x", "mild-y"]


def test_mimebundle_is_plotly_json_with_a_text_fallback():
    bundle = mimebundle({"data": [], "layout": {"title": "t"}, "frames": []}, "some text")
    assert bundle == {PLOTLY_MIME: {"data": [], "layout": {"title": "t"}}, "text/plain": "some text"}


def test_live_curves_redraw_on_evaluations_and_at_most_every_interval():
    curves = LiveCurves("mild-x", "mild", steps_per_epoch=2, interval=3600)
    curves.show()
    assert curves.redraws == 1
    for step in range(1, 5):
        curves("batch", {"step": step, "epoch": (step - 1) // 2, "wall_time": step / 10,
                         "train_loss": 1 / step})
    assert curves.redraws == 1  # within the interval: training steps only collect data
    curves("eval", entry(2, 4, 0.4, 6.0))
    assert curves.redraws == 2
    run = fake_run("mild-x", "mild", [entry(2, 4, 0.4, 6.0)])
    final = curves.finish(run)
    traces = traces_by_name(final)
    assert traces["mild-x mIoU"]["y"] == [6.0]
    assert traces["train loss (per step)"]["y"] == [1, 0.5, 1 / 3, 0.25]
    assert curves.output.outputs == ()  # the live area is emptied


def test_headless_live_curves_stream_nothing_and_draw_the_final_figure(monkeypatch, capsys):
    """A kernel started by segkit's headless runner (SEGKIT_HEADLESS=1): no widget, one final figure."""
    monkeypatch.setenv(HEADLESS_VARIABLE, "1")
    curves = LiveCurves("mild-x", "mild", steps_per_epoch=2, interval=0)
    curves.show()
    for step in range(1, 5):
        curves("batch", {"step": step, "epoch": (step - 1) // 2, "wall_time": step / 10, "train_loss": 1 / step})
    curves("eval", entry(2, 4, 0.4, 6.0))
    assert curves.output is None and curves.redraws == 0
    final = curves.finish(fake_run("mild-x", "mild", [entry(2, 4, 0.4, 6.0)]))
    assert traces_by_name(final)["train loss (per step)"]["y"] == [1, 0.5, 1 / 3, 0.25]
    assert LiveCurves("mild-x", "mild", live=True).output is not None  # JupyterLab's default is untouched
    monkeypatch.delenv(HEADLESS_VARIABLE)
    assert LiveCurves("mild-x", "mild").live

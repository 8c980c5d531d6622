"""Static pictures of plotly figures: drawn from the figure's own data, the colours and panels it has."""

from __future__ import annotations

import io

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image
from plotly.subplots import make_subplots

from segkit.teaching import explain, pictures, plots


def pixels(figure) -> np.ndarray:
    picture = Image.open(io.BytesIO(pictures.png(figure)))
    assert picture.format == "PNG"
    return np.asarray(picture.convert("RGB")).astype(int)


def share_near(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 40) -> float:
    """The share of pixels within ``tolerance`` of a colour."""
    return float((np.abs(image - np.array(rgb)).sum(-1) < tolerance).mean())


def test_each_trace_is_drawn_in_its_own_colour():
    figure = go.Figure([go.Scatter(x=[0, 1, 2], y=[0, 2, 1], line={"color": "#ff0000", "width": 6}),
                        go.Bar(x=["a", "b"], y=[3, 1], marker={"color": "rgb(0, 0, 255)"})])
    image = pixels(figure)
    assert share_near(image, (255, 0, 0)) > 0.001  # the line
    assert share_near(image, (0, 0, 255)) > 0.02  # the bars
    empty = pixels(go.Figure([go.Scatter(x=[0, 1], y=[0, 1], line={"color": "#ff0000"}, visible=True)]))
    assert share_near(empty, (0, 0, 255)) == 0


def test_subplots_go_side_by_side_at_their_domains():
    figure = make_subplots(rows=1, cols=2)
    figure.add_trace(go.Bar(x=[0], y=[1], marker={"color": "#ff0000"}), row=1, col=1)
    figure.add_trace(go.Bar(x=[0], y=[1], marker={"color": "#00ff00"}), row=1, col=2)
    image = pixels(figure)
    half = image.shape[1] // 2
    assert share_near(image[:, :half], (255, 0, 0)) > 0.05 and share_near(image[:, half:], (255, 0, 0)) == 0
    assert share_near(image[:, half:], (0, 255, 0)) > 0.05 and share_near(image[:, :half], (0, 255, 0)) == 0


def test_typed_arrays_and_colour_forms_are_read():
    encoded = go.Figure(go.Scatter(x=np.arange(3.0), y=np.array([1.0, 2.0, 3.0]))).to_plotly_json()
    assert pictures.decoded(encoded["data"])[0]["y"].tolist() == [1.0, 2.0, 3.0]
    assert pictures.color("rgb(255, 0, 0)") == (1.0, 0.0, 0.0, 1.0)
    assert pictures.color(["#123456", "rgba(0,0,0,0)"]) == ["#123456", (0.0, 0.0, 0.0, 0.0)]


def test_heatmaps_and_images_fill_their_panel():
    heat = pixels(go.Figure(go.Heatmap(z=[[0, 1], [1, 0]], colorscale=[[0, "#ff0000"], [1, "#0000ff"]])))
    assert share_near(heat, (255, 0, 0)) > 0.1 and share_near(heat, (0, 0, 255)) > 0.1
    green = np.zeros((8, 8, 3), dtype=np.uint8)
    green[..., 1] = 255
    assert share_near(pixels(go.Figure(go.Image(z=green))), (0, 255, 0)) > 0.1


@pytest.mark.parametrize("make", [explain.ema_figure, explain.channels_last_figure, explain.mixing_figure,
                                  explain.sam_figure, explain.lr_schedule_figure])
def test_every_teaching_figure_draws(make):
    image = pixels(make())
    assert image.shape[0] > 200 and image.std() > 10  # not blank


def test_the_training_curves_draw_from_their_json():
    data = plots.CurveData(2)
    data.history = [{"epoch": 1, "step": 2, "wall_time": 3.0, "miou": 10.0, "train_loss": 1.0, "val_loss": 1.2,
                     "images_per_second": 5.0}]
    image = pixels(plots.training_figure(data, "run", "hot"))
    assert share_near(image, (0xe6, 0x39, 0x46)) > 0  # hot's colour: its markers

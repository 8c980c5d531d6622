"""Mask colours, picture tables, and a trained model's predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segkit.errors import ConfigError
from segkit.teaching.gallery import IGNORED_COLOR, Predictions, blend_masks, colorize, legend, palette, picture_table


def test_colorize_paints_classes_and_ignored_pixels():
    colors = palette(["sky", "grass"])
    picture = colorize(torch.tensor([[0, 1, -1]]), colors)
    assert picture.tolist() == [[[120, 180, 240], [90, 190, 70], list(IGNORED_COLOR)]]
    mixed = blend_masks(np.array([[0]]), np.array([[1]]), 0.75, colors)
    assert mixed.tolist() == [[[112, 182, 198]]]


def test_palette_gives_distinct_colours_to_many_classes():
    colors = palette([f"class {k}" for k in range(150)])
    assert colors.shape == (150, 3) and len({tuple(c) for c in colors}) == 150


def test_picture_table_and_legend():
    html = picture_table([[np.zeros((2, 2, 3), np.uint8)] * 2], ["a", "b"], row_labels=["#0"])
    assert html.count("data:image/png;base64,") == 2 and "<th>a</th>" not in html and ">a</th>" in html
    assert "rgb(120, 180, 240)" in legend(["sky"], palette(["sky"]))


@pytest.fixture(scope="module")
def predictions(tiny_run):
    return Predictions(tiny_run.folder)


def test_predictions_rows(predictions):
    rows = predictions.rows([1, 2])
    assert len(rows) == 2 and all(picture.shape == (32, 32, 3) for row in rows for picture in row)
    assert len(predictions) == 4
    html = predictions.html([0])
    assert "mild-tiny-seed17" in html and "#0" in html and "prediction" in html
    with pytest.raises(ConfigError, match="image index 4 is out of range; the validation set has 4 images"):
        predictions.rows([4])

"""The notebooks' pictures, checked against numbers (the figures themselves are thin)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segkit import recipes
from segkit.teaching import explain


def test_moving_average_updates_every_interval_and_holds_between():
    values = np.array([0.0, 2.0, 2.0, 2.0, 2.0])
    averaged = explain.moving_average(values, half_life=2, update_interval=2)
    assert averaged.tolist() == [0.0, 0.0, 1.0, 1.0, 1.5]


def test_ema_is_steadier_than_the_weight_it_averages():
    weights = explain.noisy_trajectory(4000, seed=1)
    averaged = explain.moving_average(weights, half_life=1000, update_interval=10)
    late = slice(3000, None)
    assert np.std(np.diff(averaged[late])) < 0.05 * np.std(np.diff(weights[late]))
    assert abs(weights[late].mean()) < 0.3  # the weight settled around its minimum, 0
    np.testing.assert_array_equal(weights, explain.noisy_trajectory(4000, seed=1))


def test_learning_rates():
    assert explain.learning_rate(recipes.hot(), 0.0) == 0.08
    assert explain.learning_rate(recipes.hot(), 1.0) == 0.0
    assert explain.learning_rate(recipes.medium(), 0.9) == 0.08


def test_memory_positions_are_the_strides():
    nchw, strides = explain.memory_positions((1, 3, 2, 3), channels_last=False)
    assert strides == (18, 6, 3, 1) and nchw[0, 1, 0, 0] == 6
    nhwc, strides = explain.memory_positions((1, 3, 2, 3), channels_last=True)
    assert strides == (18, 1, 9, 3) and nhwc[0, :, 0, 0].tolist() == [0, 1, 2]
    assert sorted(nhwc.ravel().tolist()) == list(range(18))


def test_sam_step_looks_uphill_and_steps_away_from_the_narrow_minimum():
    step = explain.sam_step((0.55, 0.35), lr=0.2, rho=0.3)
    assert np.linalg.norm(step["perturbed"] - step["start"]) == pytest.approx(0.3)
    start = explain.toy_loss(torch.tensor(step["start"]))
    assert explain.toy_loss(torch.tensor(step["perturbed"])) > start  # e(w) climbs
    narrow = np.array([0.8, 0.5])
    distance = {key: np.linalg.norm(step[key] - narrow) for key in ("start", "sgd", "sam")}
    assert distance["sgd"] < distance["start"] < distance["sam"]


def test_sam_view_makes_the_narrow_minimum_shallow():
    points = np.array([-0.8, 0.8])  # the wide and the narrow minimum, on the x axis at y = 0.5 * x

    def loss(x: np.ndarray) -> np.ndarray:
        return explain.toy_loss(torch.tensor(np.stack([x, 0.625 * x], axis=-1))).numpy()

    plain, worst = loss(points), explain.sam_view(loss, points, rho=0.3)
    assert plain[1] < plain[0]  # the narrow minimum is the deeper one...
    assert worst[1] > worst[0] + 0.3  # ...but not within rho of it


def test_mixup_example_blends_images_by_the_weight(scenes_root):
    example = explain.mixup_example(scenes_root, mixing=0.25, size=32)
    assert example["weight_a"] == 0.75
    expected = 0.75 * example["image_a"].astype(float) + 0.25 * example["image_b"]
    assert np.abs(example["mixed"] - expected).max() <= 1
    assert example["mask_a"].shape == (32, 32) and "<img" in explain.mixup_html(example)


def test_missing_a_small_class_costs_dice_and_miou_not_pixels(scenes_root):
    mask, classes = explain.first_mask(scenes_root, size=32)
    table = explain.missing_class_losses(mask, classes)
    (_, accuracy, miou, ce, dice), (_, accuracy2, miou2, ce2, dice2) = table.rows
    assert accuracy == miou == 100.0
    assert accuracy - accuracy2 < 10 and miou - miou2 > 10
    assert dice2 - dice > 2 * (ce2 - ce)


def test_mixing_weights_grow_with_alpha():
    centres, shares = explain.mixing_histogram(0.2)
    assert shares.sum() == pytest.approx(1.0) and centres.max() < 0.5
    assert explain.mixing_weights(0.5).mean() > explain.mixing_weights(0.2).mean()
    assert explain.mixing_weights(0.5).max() <= 0.5


def test_figures_draw_the_computed_values():
    schedules = {trace.name.split(" ")[0]: trace for trace in explain.lr_schedule_figure().data}
    assert list(schedules) == ["baseline", "mild", "medium", "hot"]
    baseline = schedules["baseline"]
    assert baseline.y[0] == 0.08 and baseline.y[-1] == 0.0 and baseline.x[-1] == 128  # cosine to 0 over 128
    assert set(schedules["mild"].y) == {0.08} and schedules["hot"].x[-1] == 240
    ema = explain.ema_figure(epochs=3)
    assert [trace.name.split(",")[0] for trace in ema.data] == ["a simulated weight trained by SGD", "EMA", "EMA"]
    jumps = [np.abs(np.diff(np.array(trace.y))).mean() for trace in ema.data]
    assert jumps[1] < jumps[0] / 5 and jumps[2] < jumps[0] / 5  # each average moves far less than the weight
    layout = explain.channels_last_figure((1, 3, 2, 3)).data[0].z
    assert list(layout[0]) == [0] * 6 + [1] * 6 + [2] * 6 and list(layout[1]) == [0, 1, 2] * 6  # NCHW, NHWC
    mixing = explain.mixing_figure().data
    assert [trace.name.split(" ")[1] for trace in mixing] == ["0.2", "0.5"]
    assert all(abs(sum(trace.y) - 1) < 1e-3 for trace in mixing)  # shares of batches
    assert len(explain.sam_figure().data) == 7

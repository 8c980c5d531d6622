"""mIoU and pixel accuracy from a confusion matrix accumulated over the whole evaluation set."""

from __future__ import annotations

import math

import pytest
import torch

from segkit.metrics import MeanIoU, PixelAccuracy, confusion_matrix, iou_per_class, mean_iou, pixel_accuracy


def test_by_hand():
    predictions = torch.tensor([[0, 0, 1, 1, 2, 2]])
    target = torch.tensor([[0, 1, 1, 1, -1, 0]])
    confusion = confusion_matrix(predictions, target, 3)
    assert confusion.tolist() == [[1, 0, 1], [1, 2, 0], [0, 0, 0]]
    ious = iou_per_class(confusion)
    assert ious[0].item() == pytest.approx(100 / 3)  # I = 1, U = 2 true + 2 predicted - 1
    assert ious[1].item() == pytest.approx(200 / 3)  # I = 2, U = 3 + 2 - 2
    assert ious[2].item() == 0  # predicted once, never true: union 1, intersection 0
    assert mean_iou(confusion) == pytest.approx((100 / 3 + 200 / 3 + 0) / 3)
    assert pixel_accuracy(confusion) == pytest.approx(60.0)  # 3 of 5 labelled pixels


def test_classes_never_seen_nor_predicted_are_left_out():
    confusion = confusion_matrix(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]), 5)
    assert math.isnan(iou_per_class(confusion)[4].item())
    assert mean_iou(confusion) == 100.0


def logits(labels: list[list[int]]) -> torch.Tensor:
    """One-hot 'logits' (1, 2, H, W) that predict ``labels``."""
    return torch.nn.functional.one_hot(torch.tensor(labels), 2).permute(2, 0, 1)[None].float()


def test_metric_accumulates_over_batches_not_per_batch_mean():
    metric = MeanIoU(2)
    metric.update(logits([[0, 0, 0, 0]]), torch.tensor([[[0, 0, 0, 1]]]))  # batch mIoU: (75 + 0) / 2
    metric.update(logits([[1, 1, 1, 1]]), torch.tensor([[[1, 1, 1, 1]]]))  # batch mIoU: 100
    # Over the set: class 0: I 3, U 4; class 1: I 4, U 5.
    assert metric.compute().item() == pytest.approx((75 + 80) / 2)
    accuracy = PixelAccuracy(2)
    accuracy.update(logits([[0, 0, 0, 0]]), torch.tensor([[[0, 0, 0, 1]]]))
    assert accuracy.compute().item() == pytest.approx(75.0)

"""Segmentation metrics from a confusion matrix accumulated over the whole evaluation set.

mIoU is the mean, over classes that occur in the labels or the predictions (union > 0), of
``intersection / union``; pixel accuracy is the share of labelled pixels predicted right. Both
are in percent, as published for ADE20k. Ignored pixels (-1) count nowhere.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from segkit.transforms import IGNORE_INDEX


def confusion_matrix(predictions: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Count (true class, predicted class) pairs over labelled pixels.

    Args:
        predictions: ``(N, H, W)`` predicted class indices.
        target: ``(N, H, W)`` true class indices, ``ignore_index`` for ignored pixels.
        num_classes: C.

    Returns:
        ``(C, C)`` int64 counts, rows = true class, columns = predicted class.

    Example:
        >>> confusion_matrix(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 1, -1]]), 2).tolist()
        [[1, 0], [0, 1]]
    """
    valid = target != ignore_index
    pairs = target[valid] * num_classes + predictions[valid]
    return torch.bincount(pairs, minlength=num_classes * num_classes).view(num_classes, num_classes)


def iou_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """``(C,)`` IoU in percent per class; NaN for classes with an empty union."""
    confusion = confusion.double()
    intersection = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - intersection
    return torch.where(union > 0, 100 * intersection / union.clamp_min(1), torch.nan)


def mean_iou(confusion: torch.Tensor) -> float:
    """mIoU in percent over the classes with a non-empty union."""
    ious = iou_per_class(confusion)
    present = ~ious.isnan()
    return float(ious[present].mean()) if present.any() else 0.0


def pixel_accuracy(confusion: torch.Tensor) -> float:
    """Correct labelled pixels over labelled pixels, in percent."""
    total = confusion.sum()
    return float(100 * confusion.diagonal().sum() / total) if total > 0 else 0.0


class ConfusionMatrix(Metric):
    """A torchmetrics metric that sums confusion matrices (across batches and GPUs).

    ``update(logits, target)`` takes logits ``(N, C, H, W)`` and a mask ``(N, H, W)``;
    subclasses turn the matrix into one number in ``summarize``. ``computed_confusion`` is the matrix
    the last ``compute`` saw: summed over every process. torchmetrics sums the processes' states just
    before ``compute`` and gives each process its own share back right after, so ``confusion`` read
    later covers this process's images only (per-class IoU from it would be rank-local).
    """

    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.add_state("confusion", default=torch.zeros(num_classes, num_classes, dtype=torch.int64),
                       dist_reduce_fx="sum")
        self.computed_confusion: torch.Tensor | None = None

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        predictions = logits.argmax(dim=1)  # (N, H, W)
        self.confusion += confusion_matrix(predictions, target, self.num_classes, self.ignore_index)

    def compute(self) -> torch.Tensor:
        self.computed_confusion = self.confusion.detach().clone()
        return torch.tensor(self.summarize(self.computed_confusion))

    def summarize(self, confusion: torch.Tensor) -> float:
        raise NotImplementedError


class MeanIoU(ConfusionMatrix):
    """mIoU in percent over the whole evaluation set."""

    def summarize(self, confusion: torch.Tensor) -> float:
        return mean_iou(confusion)


class PixelAccuracy(ConfusionMatrix):
    """Pixel accuracy in percent over the whole evaluation set."""

    def summarize(self, confusion: torch.Tensor) -> float:
        return pixel_accuracy(confusion)

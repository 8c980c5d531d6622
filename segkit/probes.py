"""Probes: what a run also measures at each evaluation, beside what it records anyway.

A probe has ``measure(state) -> dict`` of numbers; ``segkit.engine.RunRecorder`` adds them to the
history entry of each evaluation and leaves their time out of the run's wall time. The one probe
here is notebook 01's: the mIoU of the weights SGD trains, beside the EMA's (``evaluate_raw_weights``).
"""

from __future__ import annotations

from typing import Protocol

import torch
from composer.core import State
from composer.utils import dist

from segkit.metrics import confusion_matrix, mean_iou


class Probe(Protocol):
    def measure(self, state: State) -> dict[str, float]:
        """Numbers to add to the history entry of the evaluation that just ended."""


class RawWeightsProbe:
    """``miou_raw``: the mIoU of the live (raw) weights, once an EMA has started; nothing before."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def measure(self, state: State) -> dict[str, float]:
        if not ema_has_started(state):
            return {}
        return {"miou_raw": round(live_weights_miou(state, self.num_classes), 4)}


def ema_has_started(state: State) -> bool:
    return any(getattr(algorithm, "ema_started", False) for algorithm in state.algorithms)


@torch.no_grad()
def live_weights_miou(state: State, num_classes: int) -> float:
    """The mIoU of the model's live weights (outside an evaluation: the weights SGD trains) on the
    evaluation data, summed over all processes.

    Iterating a DataLoader draws its base seed from torch's global generator; that state is restored
    afterwards, so a run that measures this trains exactly as one that does not.
    """
    model, was_training = state.model, state.model.training
    model.eval()
    confusion = state.device.tensor_to_device(torch.zeros(num_classes, num_classes, dtype=torch.int64))
    with torch.random.fork_rng(devices=[]):
        data = state.evaluators[0].dataloader  # a DataSpec: its loader and what makes a batch ready on the device
        for batch in data.dataloader:
            images, masks = data.microbatch_transforms(state.device.batch_to_device(batch))
            confusion += confusion_matrix(model((images, masks)).argmax(1), masks, num_classes)
    model.train(was_training)
    dist.all_reduce(confusion, reduce_operation="SUM")
    return mean_iou(confusion.cpu())

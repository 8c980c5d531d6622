"""The reference objective: 0.375 * cross-entropy + 1.125 * Dice, with ignored pixels.

Targets are integer masks ``(N, H, W)`` with ``-1`` for ignored pixels, or, for a MixUp batch,
``MixedMasks``: two masks and the weight of the first. Both losses are written for a list of
``(mask, weight)`` components, so a MixUp target never becomes a dense one-hot tensor
``(N, C, H, W)`` (2.5 GB for 16 x 150 x 512 x 512 in fp32); memory stays at the baseline's.

The math is in pure functions (``cross_entropy``, ``dice_loss``) tested against hand-computed
numbers; ``SegmentationLoss`` is the thin module that weights them and reports the parts.

On a GPU the logits are half precision (``amp_fp16``, ``amp_bf16``) and the largest tensor of the step
(16 x 150 x 512 x 512 per GPU): the softmax stays in their precision (its kernel accumulates in fp32),
every sum over pixels is taken in fp32, and no value is read back to the host, so the loss costs no
full-size fp32 copy and never waits for the GPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from segkit.transforms import IGNORE_INDEX

if TYPE_CHECKING:
    from segkit.recipes import Recipe

#: Smoothing of the Dice ratio, numerator and denominator (as in Composer's DiceLoss).
DICE_SMOOTH = 1e-5


class MixedMasks(NamedTuple):
    """The target of a MixUp batch: each pixel is ``lam`` of ``first`` and ``1 - lam`` of ``second``."""

    first: torch.Tensor  # (N, H, W) integer, -1 = ignored
    second: torch.Tensor  # (N, H, W) integer, the masks of the images mixed in
    lam: float | torch.Tensor  # a 0-d tensor under torch.compile, so that a new lambda does not recompile


Target = torch.Tensor | MixedMasks


def components(target: Target) -> list[tuple[torch.Tensor, float | torch.Tensor]]:
    """A target as ``(mask, weight)`` pairs whose weights sum to one."""
    if isinstance(target, MixedMasks):
        return [(target.first, target.lam), (target.second, 1.0 - target.lam)]
    return [(target, 1.0)]


def cross_entropy(log_probs: torch.Tensor, target: Target, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean pixel cross-entropy against a (possibly mixed) target.

    For a mixed target this equals the cross-entropy with the interpolated label distribution,
    averaged over the target's probability mass: a pixel ignored in one mask counts with the
    other mask's weight only.

    Args:
        log_probs: ``(N, C, H, W)`` log-softmax of the logits.
        target: a mask ``(N, H, W)`` or ``MixedMasks``.
        ignore_index: mask value of ignored pixels.

    Returns:
        A scalar; 0 when no pixel is labelled.
    """
    total = log_probs.new_zeros((), dtype=torch.float32)
    mass = log_probs.new_zeros((), dtype=torch.float32)
    for mask, weight in components(target):
        valid = mask != ignore_index
        picked = log_probs.gather(1, mask.clamp_min(0).long().unsqueeze(1)).squeeze(1)  # (N, H, W): log p at the truth
        total = total - weight * (picked.float() * valid).sum()
        mass = mass + weight * valid.sum()
    return total / mass.clamp_min(1e-12)


def dice_loss(probs: torch.Tensor, target: Target, ignore_index: int = IGNORE_INDEX,
              smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """Batch-wise soft Dice loss over the classes present in the target.

    Per class c, over all labelled pixels of the batch: ``1 - (2 I_c + s) / (G_c + P_c + s)``
    with ``I_c = sum p_c t_c``, ``G_c = sum t_c``, ``P_c = sum p_c``; classes absent from the
    target (``G_c = 0``) are left out of the mean, ignored pixels count nowhere.

    Args:
        probs: ``(N, C, H, W)`` softmax probabilities.
        target: a mask ``(N, H, W)`` or ``MixedMasks``.
        ignore_index: mask value of ignored pixels.
        smooth: added to numerator and denominator.

    Returns:
        A scalar; 0 when no pixel is labelled.
    """
    num_classes = probs.shape[1]
    intersection = probs.new_zeros(num_classes, dtype=torch.float32)  # I_c
    target_mass = probs.new_zeros(num_classes, dtype=torch.float32)  # G_c
    pixel_weight = probs.new_zeros(probs.shape[0], *probs.shape[2:])  # (N, H, W): target mass per pixel
    for mask, weight in components(target):
        valid = mask != ignore_index
        labels = mask.clamp_min(0).long().flatten()  # ignored pixels point at class 0 with weight 0
        picked = probs.gather(1, mask.clamp_min(0).long().unsqueeze(1)).squeeze(1).float() * valid  # (N, H, W)
        intersection = intersection.index_add(0, labels, weight * picked.flatten())
        target_mass = target_mass.index_add(0, labels, weight * valid.flatten().float())
        pixel_weight = pixel_weight + weight * valid
    # P_c without an (N, C, H, W) copy: a contraction that accumulates in fp32 inside the kernel.
    prediction_mass = torch.einsum("nchw,nhw->c", probs, pixel_weight.to(probs.dtype)).float()
    present = (target_mass > 0).float()
    dice = 1 - (2 * intersection + smooth) / (target_mass + prediction_mass + smooth)
    # The mean over present classes, as a ratio rather than a boolean index: no host sync; 0 when none is.
    return (dice * present).sum() / present.sum().clamp_min(1)


class SegmentationLoss(nn.Module):
    """``ce_weight * cross_entropy + dice_weight * dice``, with the parts for logging.

    Terms with weight 0 are not computed (Dice costs about 10% of a step at full scale).

    Args:
        ce_weight: weight of the cross-entropy (0.375 in the reference).
        dice_weight: weight of the Dice loss (1.125 in the reference).
        ignore_index: mask value of ignored pixels.

    Returns (``forward``):
        ``{"total": ..., "cross_entropy": ..., "dice": ...}``, scalars; ``total`` is the one to
        back-propagate.

    Example:
        >>> loss = SegmentationLoss()(torch.zeros(1, 2, 1, 2), torch.tensor([[[0, 1]]]))
        >>> round(float(loss["cross_entropy"]), 4), round(float(loss["dice"]), 4)
        (0.6931, 0.5)
    """

    def __init__(self, ce_weight: float = 0.375, dice_weight: float = 1.125, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.ce_weight, self.dice_weight, self.ignore_index = ce_weight, dice_weight, ignore_index

    def forward(self, logits: torch.Tensor, target: Target) -> dict[str, torch.Tensor]:
        # Autocast would run the softmax in fp32, a full-size copy of the logits: keep their precision.
        with torch.autocast(logits.device.type, enabled=False):
            log_probs = F.log_softmax(logits, dim=1)
            parts = {"cross_entropy": logits.new_zeros((), dtype=torch.float32),
                     "dice": logits.new_zeros((), dtype=torch.float32)}
            if self.ce_weight:
                parts["cross_entropy"] = cross_entropy(log_probs, target, self.ignore_index)
            if self.dice_weight:
                parts["dice"] = dice_loss(log_probs.exp(), target, self.ignore_index)
        total = self.ce_weight * parts["cross_entropy"] + self.dice_weight * parts["dice"]
        return {"total": total, **parts}


def loss_for(recipe: Recipe) -> SegmentationLoss:
    """The loss a recipe trains with: the one place a recipe's loss settings become a loss (the engine and
    ``segkit.teaching.measurements`` call it).

    Example:
        >>> from segkit.recipes import baseline
        >>> loss = loss_for(baseline())
        >>> loss.ce_weight, loss.dice_weight
        (0.375, 1.125)
    """
    return SegmentationLoss(recipe.ce_weight, recipe.dice_weight)

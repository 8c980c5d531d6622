"""CE + Dice against hand-computed numbers, ignored pixels, and MixUp targets."""

from __future__ import annotations

import math

import pytest
import torch

from segkit.losses import MixedMasks, SegmentationLoss, cross_entropy, dice_loss

EPS = 1e-5


def probs_of(*pixels):
    """(1, C, 1, P) probabilities from per-pixel probability lists."""
    return torch.tensor(pixels, dtype=torch.float64).T.reshape(1, len(pixels[0]), 1, len(pixels))


def test_cross_entropy_by_hand():
    probs = probs_of([0.7, 0.3], [0.2, 0.8], [0.5, 0.5])
    target = torch.tensor([[[0, 1, -1]]])
    expected = -(math.log(0.7) + math.log(0.8)) / 2  # the ignored pixel counts nowhere
    assert cross_entropy(probs.log(), target).item() == pytest.approx(expected)


def test_dice_by_hand():
    probs = probs_of([0.7, 0.3], [0.2, 0.8], [0.5, 0.5])
    target = torch.tensor([[[0, 1, -1]]])
    # class 0: I = 0.7, G = 1, P = 0.7 + 0.2; class 1: I = 0.8, G = 1, P = 0.3 + 0.8 (third pixel ignored)
    dice0 = 1 - (2 * 0.7 + EPS) / (1 + 0.9 + EPS)
    dice1 = 1 - (2 * 0.8 + EPS) / (1 + 1.1 + EPS)
    assert dice_loss(probs, target).item() == pytest.approx((dice0 + dice1) / 2)


def test_dice_leaves_out_absent_classes():
    probs = probs_of([0.6, 0.3, 0.1], [0.5, 0.25, 0.25])
    target = torch.tensor([[[0, 0]]])
    expected = 1 - (2 * 1.1 + EPS) / (2 + 1.1 + EPS)  # only class 0 is present
    assert dice_loss(probs, target).item() == pytest.approx(expected)


def test_dice_is_batch_wise():
    # Two images, one class each: batch-wise Dice pools pixels over the batch per class.
    probs = torch.tensor([[[[0.9]], [[0.1]]], [[[0.4]], [[0.6]]]], dtype=torch.float64)  # (2, 2, 1, 1)
    target = torch.tensor([[[0]], [[1]]])
    dice0 = 1 - (2 * 0.9 + EPS) / (1 + 0.9 + 0.4 + EPS)
    dice1 = 1 - (2 * 0.6 + EPS) / (1 + 0.1 + 0.6 + EPS)
    assert dice_loss(probs, target).item() == pytest.approx((dice0 + dice1) / 2)


def test_weighted_total_and_parts():
    logits = torch.zeros(1, 2, 1, 2)  # p = 0.5 everywhere
    loss = SegmentationLoss()(logits, torch.tensor([[[0, 1]]]))
    dice = 1 - (1 + EPS) / (2 + EPS)
    assert loss["cross_entropy"].item() == pytest.approx(math.log(2))
    assert loss["dice"].item() == pytest.approx(dice)
    assert loss["total"].item() == pytest.approx(0.375 * math.log(2) + 1.125 * dice)


def test_zero_weight_term_is_not_computed():
    loss = SegmentationLoss(ce_weight=1.0, dice_weight=0.0)(torch.zeros(1, 2, 1, 2), torch.tensor([[[0, 1]]]))
    assert loss["dice"].item() == 0 and loss["total"].item() == pytest.approx(math.log(2))


def test_all_ignored_gives_zero_not_nan():
    loss = SegmentationLoss()(torch.randn(1, 3, 2, 2), torch.full((1, 2, 2), -1))
    assert loss["total"].item() == 0


def test_mixed_target_by_hand():
    probs = probs_of([0.7, 0.3], [0.2, 0.8])
    first, second = torch.tensor([[[0, 1]]]), torch.tensor([[[1, -1]]])
    lam = 0.75
    mixed = MixedMasks(first, second, lam)
    # CE: weighted log-likelihoods over the target's mass (second mask ignores pixel 2).
    ce = -(lam * (math.log(0.7) + math.log(0.8)) + (1 - lam) * math.log(0.3)) / (2 * lam + (1 - lam))
    assert cross_entropy(probs.log(), mixed).item() == pytest.approx(ce)
    # Dice: pixel weights w = (1, 0.75); I0 = .75*.7, G0 = .75; I1 = .75*.8 + .25*.3, G1 = .75 + .25.
    p0 = 1 * 0.7 + 0.75 * 0.2
    p1 = 1 * 0.3 + 0.75 * 0.8
    dice0 = 1 - (2 * 0.75 * 0.7 + EPS) / (0.75 + p0 + EPS)
    dice1 = 1 - (2 * (0.75 * 0.8 + 0.25 * 0.3) + EPS) / (1.0 + p1 + EPS)
    assert dice_loss(probs, mixed).item() == pytest.approx((dice0 + dice1) / 2)


def test_mixed_target_equals_dense_interpolation_without_ignored_pixels():
    from composer.loss import DiceLoss, soft_cross_entropy

    torch.manual_seed(0)
    logits = torch.randn(3, 5, 6, 6, dtype=torch.float64)
    first, second = torch.randint(0, 5, (3, 6, 6)), torch.randint(0, 5, (3, 6, 6))
    lam = 0.8
    dense = (lam * torch.nn.functional.one_hot(first, 5) + (1 - lam) * torch.nn.functional.one_hot(second, 5))
    dense = dense.permute(0, 3, 1, 2).double()
    ours = SegmentationLoss()(logits, MixedMasks(first, second, lam))
    reference_dice = DiceLoss(softmax=True, batch=True, ignore_absent_classes=True)(logits, dense)
    assert ours["dice"].item() == pytest.approx(reference_dice.item())
    assert ours["cross_entropy"].item() == pytest.approx(soft_cross_entropy(logits, dense).item())


def test_matches_composer_on_index_targets_with_ignored_pixels():
    import warnings

    from composer.loss import DiceLoss

    torch.manual_seed(1)
    logits = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    target = torch.randint(-1, 4, (2, 8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Composer notes that negative labels are ignored
        reference = DiceLoss(softmax=True, batch=True, ignore_absent_classes=True)(logits, target)
    assert SegmentationLoss()(logits, target)["dice"].item() == pytest.approx(reference.item())
    assert SegmentationLoss()(logits, target)["cross_entropy"].item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, target, ignore_index=-1).item())


def test_gradients_flow_through_both_terms():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    SegmentationLoss()(logits, torch.randint(-1, 3, (2, 4, 4)))["total"].backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def dense_reference(logits: torch.Tensor, target, ce_weight: float = 0.375, dice_weight: float = 1.125) -> float:
    """The objective the straightforward way, in float64: a one-hot target and full-size sums."""
    probs = torch.softmax(logits.double(), dim=1)
    num_classes = probs.shape[1]
    parts = [(target.first, target.lam), (target.second, 1 - target.lam)] if isinstance(target, MixedMasks) \
        else [(target, 1.0)]
    soft = sum(float(w) * torch.nn.functional.one_hot(m.long().clamp_min(0), num_classes).permute(0, 3, 1, 2)
               * (m >= 0)[:, None] for m, w in parts)  # (N, C, H, W) target mass
    ce = -(soft * probs.log()).sum() / soft.sum()
    weight = soft.sum(1, keepdim=True)  # (N, 1, H, W)
    intersection, target_mass = (probs * soft).sum((0, 2, 3)), soft.sum((0, 2, 3))
    prediction_mass = (probs * weight).sum((0, 2, 3))
    dice = 1 - (2 * intersection + EPS) / (target_mass + prediction_mass + EPS)
    return float(ce_weight * ce + dice_weight * dice[target_mass > 0].mean())


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("mixed", [False, True])
def test_the_loss_equals_a_dense_float64_reference(dtype, tolerance, mixed):
    generator = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(4, 12, 16, 16, generator=generator)).to(dtype)
    masks = torch.randint(-1, 12, (2, 4, 16, 16), generator=generator, dtype=torch.int64)
    masks[..., 3] = 5  # a uint8 mask cannot hold -1: the loss takes any integer dtype
    target = MixedMasks(masks[0], masks[1], torch.tensor(0.3)) if mixed else masks[0]
    loss = SegmentationLoss()(logits, target)["total"]
    assert loss.dtype == torch.float32
    assert float(loss) == pytest.approx(dense_reference(logits, target), rel=tolerance)


def test_the_loss_makes_no_full_size_fp32_copy_of_half_precision_logits():
    """Every tensor the loss creates, recorded as torch dispatches it: none is fp32 at the logits' size."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.made = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            self.made += [(t.dtype, t.numel()) for t in torch.utils._pytree.tree_leaves(out) if torch.is_tensor(t)]
            return out

    logits = torch.randn(2, 150, 32, 32, dtype=torch.bfloat16, requires_grad=True)
    masks = torch.randint(0, 150, (2, 32, 32))
    with Record() as record, torch.autocast("cpu", dtype=torch.bfloat16):
        SegmentationLoss()(logits, masks)["total"].backward()
    full_size = [dtype for dtype, numel in record.made if numel == logits.numel()]
    assert full_size and torch.float32 not in full_size, full_size


def test_the_loss_has_no_data_dependent_step():
    """A host sync (a boolean index, ``.any()`` in an if, ``bincount``) breaks a graph: ``fullgraph`` refuses it."""
    loss = torch.compile(SegmentationLoss(), backend="eager", fullgraph=True)
    masks = torch.randint(-1, 6, (2, 2, 8, 8))
    for target in (masks[0], MixedMasks(masks[0], masks[1], torch.tensor(0.6))):
        assert torch.isfinite(loss(torch.randn(2, 6, 8, 8), target)["total"])

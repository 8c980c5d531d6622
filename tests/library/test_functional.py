"""The algorithms' math against closed forms: SAM's step, the EMA, MixUp's blend and its ignored pixels."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from segkit.functional import SAMOptimizer, ema_smoothing, ema_update, mix_batch
from segkit.losses import MixedMasks, cross_entropy

# --- SAM on a quadratic f(w) = 1/2 w^T A w, whose gradient is A w ------------------------------

A = torch.tensor([[3.0, 0.5], [0.5, 1.0]])


def quadratic_closure(weight: torch.nn.Parameter, seen: list[torch.Tensor]):
    def closure(**kwargs):
        weight.grad = None
        seen.append(weight.detach().clone())  # where each gradient is taken
        loss = 0.5 * weight @ A @ weight
        loss.backward()
        return loss.detach()
    return closure


def sam_reference(w: torch.Tensor, rho: float) -> torch.Tensor:
    """The gradient SAM applies at w: grad f(w + rho g / ||g||), g = grad f(w)."""
    g = A @ w
    return A @ (w + rho * g / g.norm())


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sam_step_on_a_quadratic(momentum):
    lr, rho = 0.1, 0.3
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    sam = SAMOptimizer(torch.optim.SGD([weight], lr=lr, momentum=momentum), rho=rho)
    expected, buffer, seen = weight.detach().clone(), None, []
    for _ in range(3):
        sam.step(quadratic_closure(weight, seen))
        gradient = sam_reference(expected, rho)
        buffer = gradient if buffer is None else momentum * buffer + gradient
        expected = expected - lr * buffer
        assert torch.allclose(weight.detach(), expected, atol=1e-6)
    # Each step took its first gradient at w and its second at w + e(w), then came back to w before stepping.
    first, second = seen[0], seen[1]
    g = A @ first
    assert torch.allclose(second - first, rho * g / g.norm(), atol=1e-6)
    assert torch.allclose(seen[2], first - lr * sam_reference(first, rho), atol=1e-6)


def test_sam_interval_takes_plain_steps_between():
    lr = 0.1
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    sam = SAMOptimizer(torch.optim.SGD([weight], lr=lr), rho=0.3, interval=2)
    start, seen = weight.detach().clone(), []
    sam.step_index = 0  # step 1 of training: (0 + 1) % 2 != 0, a plain step
    sam.step(quadratic_closure(weight, seen))
    assert len(seen) == 1 and torch.allclose(weight.detach(), start - lr * (A @ start))
    sam.step_index = 1  # step 2: a SAM step, two gradients
    sam.step(quadratic_closure(weight, seen))
    assert len(seen) == 3


def test_sam_puts_the_weights_back_when_the_second_pass_fails():
    """Composer's automatic microbatching catches an out-of-memory error in the second pass and retries
    the step: the weights must be w again, not w + e(w)."""
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    sam = SAMOptimizer(torch.optim.SGD([weight], lr=0.1), rho=0.3)
    start, passes = weight.detach().clone(), []

    def closure(**kwargs):
        passes.append(1)
        if len(passes) == 2:
            raise RuntimeError("CUDA out of memory")
        weight.grad = None
        loss = 0.5 * weight @ A @ weight
        loss.backward()
        return loss.detach()

    with pytest.raises(RuntimeError, match="out of memory"):
        sam.step(closure)
    assert torch.equal(weight.detach(), start)


def test_sam_optimizer_state_is_the_base_optimizers():
    model = torch.nn.Linear(3, 2)
    base = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sam = SAMOptimizer(base, rho=0.3, interval=1)

    def closure(**kwargs):
        base.zero_grad()
        loss = model(torch.ones(1, 3)).pow(2).sum()
        loss.backward()
        return loss.item()

    sam.step(closure)
    state = sam.state_dict()
    assert all("momentum_buffer" in s and "e_w" not in s for s in state["state"].values())
    assert state["state"].keys() == base.state_dict()["state"].keys()
    fresh_base = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    fresh = SAMOptimizer(fresh_base, rho=0.3)
    fresh.load_state_dict(state)
    buffers = [s["momentum_buffer"] for s in fresh_base.state.values()]
    assert len(buffers) == 2 and all(b.abs().sum() > 0 for b in buffers)
    assert fresh.state is fresh_base.state


# --- EMA -------------------------------------------------------------------------------------

def test_ema_smoothing_halves_in_a_half_life_and_matches_composer():
    from composer.algorithms import EMA

    assert ema_smoothing(100, 1) ** 100 == pytest.approx(0.5)
    assert ema_smoothing(1000, 10) ** 100 == pytest.approx(0.5)
    for half_life, interval in [(1000, 10), (2000, 1), (25, 1)]:
        composer = EMA(half_life=f"{half_life}ba", update_interval=f"{interval}ba").smoothing
        assert ema_smoothing(half_life, interval) == pytest.approx(composer, rel=1e-12)


def test_ema_update_is_the_weighted_average_and_copies_counters():
    averaged = {"w": torch.tensor([0.0, 4.0]), "count": torch.tensor(3)}
    ema_update(averaged, {"w": torch.tensor([2.0, 0.0]), "count": torch.tensor(7)}, smoothing=0.75)
    assert torch.equal(averaged["w"], torch.tensor([0.5, 3.0])) and int(averaged["count"]) == 7


def test_ema_update_matches_composers_compute_ema():
    from composer.algorithms.ema.ema import compute_ema

    torch.manual_seed(0)
    model, average = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    ours = {k: v.detach().clone() for k, v in average.state_dict().items()}
    ema_update(ours, {k: v.detach() for k, v in model.state_dict().items()}, smoothing=0.9)
    compute_ema(model, average, smoothing=0.9)
    for key, value in average.state_dict().items():
        assert torch.allclose(ours[key], value)


# --- MixUp -----------------------------------------------------------------------------------

def test_mix_batch_blends_images_and_keeps_both_masks():
    images = torch.stack([torch.zeros(3, 2, 2), torch.full((3, 2, 2), 100.0)])
    masks = torch.tensor([[[0, 1], [1, -1]], [[2, 2], [2, 2]]])
    mixed, target = mix_batch(images, masks, 0.2, torch.tensor([1, 0]))
    assert torch.allclose(mixed[0], torch.full((3, 2, 2), 20.0))
    assert torch.allclose(mixed[1], torch.full((3, 2, 2), 80.0))
    assert torch.equal(target.first, masks) and torch.equal(target.second, masks[[1, 0]])
    assert target.lam == 0.8


def test_a_pixel_ignored_in_one_mask_counts_with_the_other_masks_weight():
    logits = torch.randn(1, 3, 1, 2)
    log_probs = F.log_softmax(logits, 1)
    first = torch.tensor([[[0, -1]]])  # pixel 2 ignored in the first mask only
    second = torch.tensor([[[1, 2]]])
    loss = cross_entropy(log_probs, MixedMasks(first, second, 0.7))
    nll = -log_probs[0, :, 0]  # (C, W)
    expected = (0.7 * nll[0, 0] + 0.3 * nll[1, 0] + 0.3 * nll[2, 1]) / (0.7 + 0.3 + 0.3)
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_a_pixel_ignored_in_both_masks_counts_nowhere():
    logits = torch.randn(1, 3, 1, 2)
    log_probs = F.log_softmax(logits, 1)
    both = MixedMasks(torch.tensor([[[0, -1]]]), torch.tensor([[[1, -1]]]), 0.6)
    alone = MixedMasks(torch.tensor([[[0]]]), torch.tensor([[[1]]]), 0.6)
    assert float(cross_entropy(log_probs, both)) == pytest.approx(float(cross_entropy(log_probs[..., :1], alone)))
    nothing = MixedMasks(torch.full((1, 1, 2), -1), torch.full((1, 1, 2), -1), 0.6)
    assert float(cross_entropy(log_probs, nothing)) == 0.0
    assert not math.isnan(float(cross_entropy(log_probs, nothing)))


def test_a_new_mixup_weight_does_not_recompile_a_compiled_loss():
    """MixUp's weight travels as a tensor: a compiled loss traces one graph for every weight (a Python
    float would be baked into the graph and retraced when it changes)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from segkit.functional import mix_batch
    from segkit.losses import SegmentationLoss

    torch._dynamo.reset()
    counters.clear()
    loss = torch.compile(SegmentationLoss(), backend="eager")
    images, masks = torch.rand(2, 3, 8, 8), torch.randint(-1, 6, (2, 8, 8))
    for mixing in (0.1, 0.3, 0.45):
        _, target = mix_batch(images, masks, mixing, torch.tensor([1, 0]))
        loss(torch.randn(2, 6, 8, 8), target)
    assert counters["stats"]["unique_graphs"] == 1

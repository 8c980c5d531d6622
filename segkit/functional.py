"""The math of the recipes' algorithms as plain PyTorch: no Composer, no trainer.

``segkit.algorithms`` wraps these in Composer algorithms for training; the notebooks' pictures
(``segkit.teaching.explain``) and the tests call them directly.

    ema_smoothing   the EMA's decay per update, from its half-life and update interval
    ema_update      one update of the averaged weights
    mix_batch       MixUp for segmentation: blend images, keep both masks
    SAMOptimizer    sharpness-aware minimization around any optimizer, safe to checkpoint
"""

from __future__ import annotations

import torch

from segkit.losses import MixedMasks


def ema_smoothing(half_life: float, update_interval: float = 1) -> float:
    """The EMA's decay per update, ``2 ** (-update_interval / half_life)`` (both in batches).

    After ``half_life`` batches the average keeps half the weight of where it started (Composer's
    ``EMA`` uses the same formula).

    Example:
        >>> round(ema_smoothing(1000, 10), 6)
        0.993092
    """
    return 2.0 ** (-update_interval / half_life)


@torch.no_grad()
def ema_update(averaged: dict[str, torch.Tensor], current: dict[str, torch.Tensor], smoothing: float) -> None:
    """``averaged = smoothing * averaged + (1 - smoothing) * current``, in place, for float tensors;
    other tensors (BatchNorm's batch counters) are copied.

    Example:
        >>> average = {"w": torch.tensor([0.0])}
        >>> ema_update(average, {"w": torch.tensor([1.0])}, smoothing=0.75)
        >>> average["w"].item()
        0.25
    """
    for key, value in averaged.items():
        if value.is_floating_point():
            value.mul_(smoothing).add_(current[key], alpha=1 - smoothing)
        else:
            value.copy_(current[key])


def mix_batch(images: torch.Tensor, masks: torch.Tensor, mixing: float,
              permutation: torch.Tensor) -> tuple[torch.Tensor, MixedMasks]:
    """MixUp for segmentation: blend each image with another of the batch, keep both masks.

    Args:
        images: ``(N, 3, H, W)`` images.
        masks: ``(N, H, W)`` masks, -1 = ignored.
        mixing: weight of the mixed-in image, in [0, 0.5] (Composer draws ``min(z, 1 - z)``).
        permutation: ``(N,)`` index of the image mixed into each one.

    Returns:
        ``(mixed_images, MixedMasks(masks, masks[permutation], 1 - mixing))``, the weight a 0-d tensor on the
        images' device (a Python float would make a compiled loss recompile for each new value).

    Example:
        >>> images, target = mix_batch(torch.tensor([[0.0], [4.0]]), torch.tensor([[1], [2]]), 0.25,
        ...                            torch.tensor([1, 0]))
        >>> images.flatten().tolist(), target.second.flatten().tolist(), float(target.lam)
        ([1.0, 3.0], [2, 1], 0.75)
    """
    mixed = (1 - mixing) * images.float() + mixing * images[permutation].float()
    return mixed, MixedMasks(masks, masks[permutation], torch.tensor(1.0 - mixing, device=images.device))



def is_sam_step(step: int, interval: int) -> bool:
    """Whether training step ``step`` (1, 2, ...) is a SAM step: every ``interval``-th one.

    The one statement of the rule: ``SAMOptimizer`` steps by it, and ``sam_steps`` counts by it.
    """
    return step % interval == 0


def sam_steps(steps: int, interval: int) -> int:
    """How many of the first ``steps`` training steps are SAM steps (``is_sam_step``).

    Example:
        >>> sam_steps(10, 2), sum(is_sam_step(k, 2) for k in range(1, 11))
        (5, 5)
    """
    return steps // interval


class SAMOptimizer(torch.optim.Optimizer):
    """Sharpness-aware minimization around a base optimizer, safe to checkpoint and resume.

    On a SAM step the gradient at ``w`` gives ``e(w) = rho * g / ||g||``; the gradient at
    ``w + e(w)`` is then applied at ``w`` by the base optimizer. Other steps are plain steps.

    The wrapper shares ``param_groups`` and ``state`` with the base optimizer, so schedulers,
    ``state_dict`` and ``load_state_dict`` act on the base optimizer's momentum; ``e(w)`` lives
    only during a step.

    Args:
        base_optimizer: the optimizer that takes the actual steps.
        rho: neighbourhood radius.
        epsilon: added to the gradient norm.
        interval: SAM runs on steps where ``(step_index + 1) % interval == 0``.
    """

    _step_supports_amp_closure = True  # read by Composer's trainer: step() takes a closure

    def __init__(self, base_optimizer: torch.optim.Optimizer, rho: float, epsilon: float = 1e-12,
                 interval: int = 1):
        super().__init__(base_optimizer.param_groups, base_optimizer.defaults)
        self.base_optimizer = base_optimizer
        self.param_groups = base_optimizer.param_groups
        self.state = base_optimizer.state
        self.rho, self.epsilon, self.interval = rho, epsilon, interval
        self.step_index = 0  # batches trained before the current one; set by the SAM algorithm

    def is_sam_step(self) -> bool:
        return is_sam_step(self.step_index + 1, self.interval)

    @torch.no_grad()
    def step(self, closure=None):
        if closure is None:  # a plain step, e.g. torch.distributed.checkpoint initializing state
            return self.base_optimizer.step()
        closure = torch.enable_grad()(closure)
        if not self.is_sam_step():
            loss = closure()
            if loss:
                self.base_optimizer.step()
            return loss
        loss = closure(ddp_sync=False)  # gradient at w, local to this GPU as in the SAM paper
        if loss:
            # With several processes each climbs its own e(w); (w + e) - e rounds differently on each, and
            # the replicas would drift apart (and a run resumed from rank 0's weights would differ), so
            # there w itself is kept and put back. One process keeps the subtraction its runs were made with.
            replicas = torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1
            perturbation = self._climb(keep_weights=replicas)
            try:
                ascent_ok = closure(loss_dict={})  # gradient at w + e(w); its loss is not logged
            finally:
                # Back to w even when the second pass raises: Composer's automatic microbatching
                # catches an out-of-memory error there and retries the step from these weights.
                for param, (e_w, w) in perturbation.items():
                    if w is None:
                        param.sub_(e_w)
                    else:
                        param.copy_(w)
            if ascent_ok:
                self.base_optimizer.step()
        return loss

    def _climb(self, keep_weights: bool = False) -> dict[torch.Tensor, tuple[torch.Tensor, torch.Tensor | None]]:
        """Move every parameter to ``w + e(w)``; return, per parameter, the ``e(w)`` applied and (with
        ``keep_weights``) a copy of ``w``."""
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        scale = self.rho / (grad_norm + self.epsilon)
        perturbation = {}
        for param in params:
            e_w = param.grad * scale.to(param)
            kept = param.detach().clone() if keep_weights else None
            param.add_(e_w)
            perturbation[param] = (e_w, kept)
        return perturbation

    def load_state_dict(self, state_dict: dict) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups, self.state = self.base_optimizer.param_groups, self.base_optimizer.state

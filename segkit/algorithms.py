"""A recipe's algorithms as Composer objects, with two fixes segmentation needs.

``build_algorithms(recipe)`` returns, in order: ``ChannelsLast`` and ``EMA`` from Composer, and
segkit's own ``SAM`` and ``SegmentationMixUp``:

- **SAM that resumes.** Composer's SAM wraps the optimizer after a checkpoint is loaded, in an
  optimizer whose state holds only the perturbation ``e(w)``. A checkpoint therefore stores no
  momentum under the wrapper's class name, and on resume the unwrapped optimizer finds nothing
  under its own ("SAMOptimizer is not in the state_dict"): momentum restarts from zero and the
  weights drift from an uninterrupted run (Composer warns of "weight mismatch"). Its step
  counter also restarts at zero, shifting which steps are SAM steps when ``interval > 1``.
  Here the wrapper is installed before loading, shares the base optimizer's state (so momentum
  is saved and restored), keeps ``e(w)`` outside it, and takes its step index from the trainer's
  batch count, which is checkpointed.
- **MixUp without a dense target.** Composer's MixUp turns masks into one-hot ``(N, C, H, W)``
  targets (2.5 GB at 16 x 150 x 512 x 512); its loss-interpolating mode refuses a dict loss.
  ``SegmentationMixUp`` mixes images and hands the loss ``MixedMasks`` (two index masks and a
  weight), which ``segkit.losses`` handles directly, ignored pixels included.
"""

from __future__ import annotations

import numpy as np
import torch
from composer.algorithms import EMA, ChannelsLast
from composer.core import Algorithm, Event, State
from composer.loggers import Logger

from segkit.losses import MixedMasks
from segkit.recipes import Recipe


def mix_batch(images: torch.Tensor, masks: torch.Tensor, mixing: float,
              permutation: torch.Tensor) -> tuple[torch.Tensor, MixedMasks]:
    """MixUp for segmentation: blend each image with another of the batch, keep both masks.

    Args:
        images: ``(N, 3, H, W)`` images.
        masks: ``(N, H, W)`` masks, -1 = ignored.
        mixing: weight of the mixed-in image, in [0, 0.5] (Composer draws ``min(z, 1 - z)``).
        permutation: ``(N,)`` index of the image mixed into each one.

    Returns:
        ``(mixed_images, MixedMasks(masks, masks[permutation], 1 - mixing))``.

    Example:
        >>> images, target = mix_batch(torch.tensor([[0.0], [4.0]]), torch.tensor([[1], [2]]), 0.25,
        ...                            torch.tensor([1, 0]))
        >>> images.flatten().tolist(), target.second.flatten().tolist(), target.lam
        ([1.0, 3.0], [2, 1], 0.75)
    """
    mixed = (1 - mixing) * images.float() + mixing * images[permutation].float()
    return mixed, MixedMasks(masks, masks[permutation], 1.0 - mixing)


class SegmentationMixUp(Algorithm):
    """MixUp for dense labels: at each training forward, mix the batch's images.

    One mixing weight per batch, ``min(z, 1 - z)`` with ``z ~ Beta(alpha, alpha)`` from NumPy's
    global generator, and one random permutation, as Composer's MixUp draws them (both generators
    are seeded and checkpointed by Composer, so runs repeat and resume exactly).

    Args:
        alpha: the Beta distribution's parameter (0.2 in medium, 0.5 in hot).
    """

    def __init__(self, alpha: float):
        self.alpha = alpha
        self.last_mixing: float | None = None  # for inspection and tests

    def match(self, event: Event, state: State) -> bool:
        return event == Event.BEFORE_FORWARD

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        images, masks = state.batch
        draw = np.random.beta(self.alpha, self.alpha)
        self.last_mixing = float(min(draw, 1.0 - draw))
        permutation = torch.randperm(images.shape[0]).to(images.device)
        state.batch = mix_batch(images, masks, self.last_mixing, permutation)


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
        return (self.step_index + 1) % self.interval == 0

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
            perturbation = self._climb()
            ascent_ok = closure(loss_dict={})  # gradient at w + e(w); its loss is not logged
            for param, e_w in perturbation.items():
                param.sub_(e_w)  # back to w
            if ascent_ok:
                self.base_optimizer.step()
        return loss

    def _climb(self) -> dict[torch.Tensor, torch.Tensor]:
        """Move every parameter to ``w + e(w)``; return the ``e(w)`` applied."""
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        scale = self.rho / (grad_norm + self.epsilon)
        perturbation = {}
        for param in params:
            e_w = param.grad * scale.to(param)
            param.add_(e_w)
            perturbation[param] = e_w
        return perturbation

    def load_state_dict(self, state_dict: dict) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups, self.state = self.base_optimizer.param_groups, self.base_optimizer.state


class SAM(Algorithm):
    """Wraps the optimizer in ``SAMOptimizer`` before any checkpoint is loaded (Event.INIT).

    Args:
        rho: neighbourhood radius (0.3 in medium and hot).
        interval: SAM every ``interval`` steps (2 in medium, 1 in hot).
    """

    def __init__(self, rho: float, interval: int = 1, epsilon: float = 1e-12):
        self.rho, self.interval, self.epsilon = rho, interval, epsilon

    def match(self, event: Event, state: State) -> bool:
        return event in (Event.INIT, Event.BATCH_START)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.INIT:
            state.optimizers = tuple(SAMOptimizer(optimizer, self.rho, self.epsilon, self.interval)
                                     for optimizer in state.optimizers)
        else:
            for optimizer in state.optimizers:
                optimizer.step_index = int(state.timestamp.batch)


def build_algorithms(recipe: Recipe) -> list[Algorithm]:
    """The Composer algorithms of a recipe (at any scale: durations are passed as they are).

    Example:
        >>> from segkit import recipes
        >>> [type(a).__name__ for a in build_algorithms(recipes.medium())]
        ['ChannelsLast', 'EMA', 'SAM', 'SegmentationMixUp']
    """
    algorithms: list[Algorithm] = []
    if recipe.channels_last:
        algorithms.append(ChannelsLast())
    if recipe.ema_half_life is not None:
        algorithms.append(EMA(half_life=recipe.ema_half_life, update_interval=recipe.ema_update_interval))
    if recipe.sam_rho is not None:
        algorithms.append(SAM(rho=recipe.sam_rho, interval=recipe.sam_interval))
    if recipe.mixup_alpha is not None:
        algorithms.append(SegmentationMixUp(alpha=recipe.mixup_alpha))
    return algorithms

"""A recipe's algorithms as Composer objects, with two fixes segmentation needs.

This module, ``segkit.engine`` and ``segkit.probes`` are the only ones that import Composer. The math lives in
``segkit.functional`` (EMA smoothing and update, SAM's step, MixUp's blend); here it is wired into
Composer's events. ``build_algorithms(recipe)`` returns, in order: ``ChannelsLast`` and ``EMA``
from Composer, and segkit's own ``SAM`` and ``SegmentationMixUp``; ``evaluated_weights(state)``
says which weights an evaluation used (the EMA's, once it has started):

- **SAM that resumes.** Composer's SAM wraps the optimizer after a checkpoint is loaded, in an
  optimizer whose state holds only the perturbation ``e(w)``. A checkpoint therefore stores no
  momentum (it is saved under the wrapper's name, ``SAMOptimizer``), and a resumed run warns
  "DecoupledSGDW is not in the state_dict. Its state will not be restored." (docs/recipes.md):
  momentum restarts from zero and the weights drift from an uninterrupted run. Its step
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
from torch.nn.parallel import DistributedDataParallel

from segkit.functional import SAMOptimizer, mix_batch
from segkit.recipes import Recipe


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


def evaluated_weights(state: State) -> dict[str, torch.Tensor]:
    """The weights the last evaluation used, as a plain state dict of the network, whatever the world size.

    Composer's EMA swaps its averaged weights in for evaluation and back out after it; outside an
    evaluation they sit in the EMA's own copy. Without EMA these are the trained weights. With more
    than one process the model is wrapped in DDP (and the EMA's copy with it): the keys are the bare
    network's either way, so that one ``model.pt`` loads after any run.
    """
    model = state.model.module if isinstance(state.model, DistributedDataParallel) else state.model
    module = model.module  # SegmentationModel.module: the network
    weights = {key: value.detach().clone() for key, value in module.state_dict().items()}
    for algorithm in state.algorithms:
        if isinstance(algorithm, EMA) and algorithm.ema_started and not algorithm.ema_weights_active:
            averaged = {**algorithm.ema_model.named_parameters_dict, **algorithm.ema_model.named_buffers_dict}
            averaged = {network_key(key): value for key, value in averaged.items()}
            if not set(weights) <= set(averaged):
                missing = sorted(set(weights) - set(averaged))[0]
                raise RuntimeError(f"the EMA's copy of the model has no {missing}; its weights cannot be saved")
            weights.update({key: averaged[key].detach().clone() for key in weights})
    return {key: value.contiguous() for key, value in weights.items()}


def network_key(key: str) -> str:
    """A parameter's name in the bare network: without the ``module.`` of ``SegmentationModel.module``
    and of a DDP wrapper around it (the network has no child named ``module``).

    Example:
        >>> network_key("module.module.backbone.conv1.weight"), network_key("backbone.conv1.weight")
        ('backbone.conv1.weight', 'backbone.conv1.weight')
    """
    while key.startswith("module."):
        key = key.removeprefix("module.")
    return key


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

"""Measurements of real runs, for the notebooks and the recipe study: what an algorithm did to a run.

    ema_against_raw        the EMA's weights against the raw weights, both evaluated, over a run
    sharpness              the loss increase at distance rho from a run's weights (what SAM lowers)
    fit_gap                a run's mIoU on its training images against validation (what MixUp curbs)

Their figures are in ``segkit.teaching.explain``; the raw weights' mIoU is recorded during training by
``segkit.engine.RunRecorder`` (``evaluate_raw_weights``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from segkit import recipes
from segkit.data import open_dataset
from segkit.inference import evaluate, load_model
from segkit.losses import loss_for
from segkit.runs import Run
from segkit.transforms import eval_transform, normalize


def ema_against_raw(run: Run) -> dict[str, list[float]]:
    """Over a run trained with ``evaluate_raw_weights``: mIoU of the EMA's weights and of the raw ones.

    Returns:
        ``{"epoch": [...], "ema": [...], "raw": [...]}``, for the evaluations that have both.
    """
    rows = [row for row in run.history if row.get("miou_raw") is not None]
    return {"epoch": [row["epoch"] for row in rows], "ema": [row["miou"] for row in rows],
            "raw": [row["miou_raw"] for row in rows]}


def training_batch(root: str | Path, size: int, count: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` training images and masks at the evaluation resize."""
    dataset = open_dataset(root, "training", eval_transform(size))
    images, masks = zip(*(dataset[i] for i in range(min(count, len(dataset)))), strict=True)
    return torch.stack(images), torch.stack(masks)


def sharpness(run_folder: str | Path, rho: float, directions: int = 8, images: int = 32,
              seed: int = 0) -> dict[str, Any]:
    """How much a run's training loss rises when its weights move by ``rho``: the sharpness SAM lowers.

    Measured on its first ``images`` training images (evaluation mode, the run's own loss), at
    the saved weights ``w`` and at ``w + rho * d`` for ``directions`` random unit directions ``d``
    over all weights, and for SAM's own direction, the normalized gradient (the steepest rise to
    first order).

    Returns:
        ``{"loss": L(w), "random": [L(w + rho d) - L(w), ...], "ascent": L(w + rho g/|g|) - L(w)}``.
    """
    model, run = load_model(run_folder, device="cpu")  # a few images; its batch stays on the CPU
    loss_fn = loss_for(recipes.from_dict(run.info["plan"], source=f"the plan in {run.folder}"))
    batch, masks = training_batch(run.info["data"]["root"], run.info["profile"]["image_size"], images)
    params = [p for p in model.parameters() if p.requires_grad]

    def loss() -> torch.Tensor:
        return loss_fn(model(normalize(batch)), masks)["total"]

    def shifted_loss(direction: list[torch.Tensor]) -> float:
        with torch.no_grad():
            for param, step in zip(params, direction, strict=True):
                param.add_(step, alpha=rho)
            value = float(loss())
            for param, step in zip(params, direction, strict=True):
                param.sub_(step, alpha=rho)
        return value

    def unit(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))
        return [t / norm for t in tensors]

    base = loss()
    gradients = torch.autograd.grad(base, params)
    generator = torch.Generator().manual_seed(seed)
    random = [shifted_loss(unit([torch.randn(p.shape, generator=generator) for p in params])) - float(base)
              for _ in range(directions)]
    return {"loss": float(base), "random": random, "ascent": shifted_loss(unit(list(gradients))) - float(base)}


def fit_gap(run_folder: str | Path, images: int = 96) -> dict[str, float]:
    """A finished run's mIoU on its own training images (evaluation transform) and on validation."""
    run = Run.load(run_folder)
    on_training = evaluate(run_folder, split="training", limit=images)["miou"]
    return {"train": on_training, "validation": run.final["miou"], "gap": on_training - run.final["miou"]}

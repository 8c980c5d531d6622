"""Inference: a trained run's network, its predictions and its scores. Plain PyTorch.

``load_model(run_folder)`` rebuilds the network a run trained and loads its ``model.pt`` (the
evaluated weights: the EMA's where the recipe has EMA), on the device the run trained on where
this machine has it (a GPU run on a GPU, else the CPU; ``segkit.devices``). ``predict`` normalizes
images exactly as training does (``segkit.transforms.normalize``) and returns class indices;
``evaluate`` scores a run on a split, at one scale or with test-time augmentation
(``predict_augmented``: several scales and a horizontal flip, as mmsegmentation's multi-scale
evaluation), batched, with the profile's precision and loader workers. The pictures and widgets
use this module, so they never load the training engine.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from segkit import checkpoints
from segkit.data import worker_context
from segkit.devices import autocast, torch_device
from segkit.errors import ConfigError
from segkit.metrics import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy
from segkit.model import apply_surgery, build_model
from segkit.runs import WEIGHTS_FILE, Run
from segkit.transforms import eval_transform, normalize


@torch.no_grad()
def predict(module: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Class indices ``(N, H, W)`` for uint8 (or 0-255 float) images ``(N, 3, H, W)``, on the images' device
    (computed on the module's)."""
    return module(normalize(images.to(module_device(module)))).argmax(1).to(images.device)


def module_device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


#: mmsegmentation's multi-scale evaluation: these ratios of the evaluation size, each also flipped.
TTA_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


@torch.no_grad()
def predict_augmented(module: torch.nn.Module, images: torch.Tensor, scales: tuple[float, ...] = TTA_SCALES,
                      flip: bool = True) -> torch.Tensor:
    """Class indices ``(N, H, W)`` from the class probabilities averaged over resized (and flipped) copies.

    Each copy is resized by a scale (bilinear), predicted, its softmax resized back to ``H x W`` (and
    flipped back), and the probabilities are averaged, as mmsegmentation's aug_test does.

    Shape:
        - images: ``(N, 3, H, W)``, uint8 or 0-255 float.
        - output: ``(N, H, W)`` int64.
    """
    height, width = images.shape[-2:]
    normalized = normalize(images.to(module_device(module)))
    total = None
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        resized = normalized if size == (height, width) else F.interpolate(
            normalized, size=size, mode="bilinear", align_corners=False)
        for flipped in ((False, True) if flip else (False,)):
            logits = module(resized.flip(-1) if flipped else resized)  # (N, C, h, w)
            probabilities = F.interpolate(logits, size=(height, width), mode="bilinear",
                                          align_corners=False).softmax(1)
            if flipped:
                probabilities = probabilities.flip(-1)
            total = probabilities if total is None else total + probabilities
    return total.argmax(1).to(images.device)


def load_model(run_folder: str | Path, device: str | torch.device | None = None) -> tuple[torch.nn.Module, Run]:
    """The trained network of a run folder (its ``model.pt``), in eval mode, with the run.

    ``device``: where to put it; by default where the run trained, if this machine has it
    (``segkit.devices.torch_device``).

    Example:
        ``model, run = load_model("runs/baseline-cpu-seed17")``
    """
    run = Run.load(run_folder)
    profile = run.info["profile"]
    module = apply_surgery(build_model(profile, run.info["data"]["num_classes"]), run.info.get("plan", {}))
    checkpoints.load_weights(run.folder / WEIGHTS_FILE, module)
    return module.eval().to(torch_device(profile["device"], device)), run


def evaluate(run_folder: str | Path, data: str | Path | None = None, split: str = "validation",
             limit: int | None = None, augmented: bool = False, device: str | torch.device | None = None,
             batch_size: int | None = None) -> dict[str, float | list[float]]:
    """Evaluate a run's weights on a split (the run's own validation data by default).

    ``split="training"`` with the evaluation transform measures how well the run fits the images
    it trained on (the train-validation gap); ``limit`` evaluates only the first images;
    ``augmented`` evaluates with test-time augmentation (``predict_augmented``, ``TTA_SCALES`` and flip).
    It runs on ``device`` (default: where the run trained, if this machine has it) with the run's
    precision (``amp_fp16`` autocast on a GPU), in batches of ``batch_size`` (default 16; on a GPU the
    run's batch per process), read by the run profile's loader workers.

    Returns:
        ``{"miou": ..., "pixel_accuracy": ..., "iou_per_class": [...]}`` in percent; a class absent from
        both the labels and the predictions has IoU NaN.
    """
    module, run = load_model(run_folder, device)
    where = module_device(module)
    profile = run.info["profile"]
    dataset = run.dataset(split, eval_transform(profile["image_size"]), data)
    if limit is not None:
        dataset = Subset(dataset, range(min(limit, len(dataset))))
    num_classes = run.info["data"]["num_classes"]
    full_set = dataset.dataset if isinstance(dataset, Subset) else dataset
    if full_set.num_classes != num_classes:
        raise ConfigError(f"{full_set.root} has {full_set.num_classes} classes; the run was trained on {num_classes}")
    on_gpu = where.type == "cuda"
    batch_size = batch_size or 16
    workers = profile["num_workers"] if on_gpu else 0
    loader = DataLoader(dataset, batch_size=max(1, batch_size), num_workers=workers, pin_memory=on_gpu,
                        multiprocessing_context=worker_context() if workers else None)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=where)
    with autocast(where, profile["precision"]):
        for images, masks in loader:
            images, masks = images.to(where, non_blocking=True), masks.to(where, non_blocking=True)
            predictions = predict_augmented(module, images) if augmented else predict(module, images)
            confusion += confusion_matrix(predictions, masks, num_classes)
    confusion = confusion.cpu()
    return {"miou": mean_iou(confusion), "pixel_accuracy": pixel_accuracy(confusion),
            "iou_per_class": iou_per_class(confusion).tolist()}

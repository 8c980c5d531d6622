"""Paired (image, mask) transforms: the reference's ADE20k training augmentation and eval resize.

Images are ``tv_tensors.Image`` (uint8, ``(3, H, W)``) and masks ``tv_tensors.Mask`` (uint8,
``(H, W)``, raw ADE20k labels with 0 = unlabelled), so torchvision's v2 kernels resize masks
with nearest neighbour and leave them alone in colour transforms. Labels are shifted to the
training convention (0 -> ignore index -1, k -> k - 1) only at the very end, by ``ToTrainingLabels``.

Training (``train_transform``), as MosaicML's ADE20k pipeline:
    1. resize to a square of ``size * s`` with ``s ~ U(0.5, 2.0)`` (aspect ratio not kept);
    2. random crop of ``size x size`` whose largest class covers under 75% of the labelled
       pixels (up to 10 tries);
    3. horizontal flip with p = 0.5;
    4. photometric distortion (brightness, contrast, saturation, hue; each with p = 0.5);
    5. pad to ``size x size``: image with the dataset mean, mask with 0 (ignored).
Evaluation (``eval_transform``): resize to ``size x size`` (bilinear image, nearest mask).
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

#: ADE20k channel mean and std on the 0-255 scale (the reference's normalization).
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
#: The ignore index of training masks.
IGNORE_INDEX = -1


class RandomSquareResize(v2.Transform):
    """Resize to ``(int(size * s), int(size * s))``, ``s ~ U(min_scale, max_scale)``."""

    def __init__(self, size: int, min_scale: float = 0.5, max_scale: float = 2.0):
        super().__init__()
        self.size, self.min_scale, self.max_scale = size, min_scale, max_scale

    def make_params(self, flat_inputs: list) -> dict:
        scale = float(torch.empty(1).uniform_(self.min_scale, self.max_scale))
        side = int(self.size * scale)
        return {"side": side}

    def transform(self, inpt, params: dict):
        return TF.resize(inpt, [params["side"], params["side"]], antialias=True)


class ClassBalancedCrop(v2.Transform):
    """Random ``size x size`` crop, retried while one class covers too much of it.

    A crop is accepted when its largest class covers less than ``max_class_ratio`` of the
    labelled pixels and more than one class is present; after ``retries`` tries the last crop
    is kept. Inputs no larger than the crop are left alone (padding comes later).
    """

    def __init__(self, size: int, max_class_ratio: float = 0.75, retries: int = 10):
        super().__init__()
        self.size, self.max_class_ratio, self.retries = size, max_class_ratio, retries

    def make_params(self, flat_inputs: list) -> dict:
        mask = next(x for x in flat_inputs if isinstance(x, tv_tensors.Mask))
        height, width = mask.shape[-2:]
        crop_h, crop_w = min(self.size, height), min(self.size, width)
        for _ in range(self.retries):
            top = int(torch.randint(0, height - crop_h + 1, ()))
            left = int(torch.randint(0, width - crop_w + 1, ()))
            window = mask[..., top:top + crop_h, left:left + crop_w]
            counts = torch.bincount(window.flatten().long())[1:]  # labelled classes only
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max() < self.max_class_ratio * counts.sum():
                break
        return {"top": top, "left": left, "height": crop_h, "width": crop_w}

    def transform(self, inpt, params: dict):
        return TF.crop(inpt, **params)


class PhotometricDistortion(v2.Transform):
    """Brightness, contrast, saturation and hue jitter, each applied with probability ``p``.

    Contrast goes before or after the colour jitter at random, as in mmseg and the reference.
    Unlike ``v2.RandomPhotometricDistort`` it never permutes channels (the reference does not).
    """

    def __init__(self, brightness: float = 32 / 255, contrast: float = 0.5, saturation: float = 0.5,
                 hue: float = 18 / 255, p: float = 0.5):
        super().__init__()
        self.brightness, self.contrast, self.saturation, self.hue, self.p = (
            brightness, contrast, saturation, hue, p)

    def make_params(self, flat_inputs: list) -> dict:
        def maybe(low: float, high: float) -> float | None:
            return float(torch.empty(1).uniform_(low, high)) if torch.rand(()) < self.p else None

        return {
            "brightness": maybe(1 - self.brightness, 1 + self.brightness),
            "contrast": maybe(1 - self.contrast, 1 + self.contrast),
            "contrast_first": bool(torch.rand(()) < 0.5),
            "saturation": maybe(1 - self.saturation, 1 + self.saturation),
            "hue": maybe(-self.hue, self.hue),
        }

    def transform(self, inpt, params: dict):
        if not isinstance(inpt, tv_tensors.Image):
            return inpt
        if params["brightness"] is not None:
            inpt = TF.adjust_brightness(inpt, params["brightness"])
        if params["contrast_first"] and params["contrast"] is not None:
            inpt = TF.adjust_contrast(inpt, params["contrast"])
        if params["saturation"] is not None:
            inpt = TF.adjust_saturation(inpt, params["saturation"])
        if params["hue"] is not None:
            inpt = TF.adjust_hue(inpt, params["hue"])
        if not params["contrast_first"] and params["contrast"] is not None:
            inpt = TF.adjust_contrast(inpt, params["contrast"])
        return inpt


class PadToSize(v2.Transform):
    """Pad bottom and right to at least ``size x size``: images with the mean, masks with 0."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def transform(self, inpt, params: dict):
        height, width = inpt.shape[-2:]
        padding = [0, 0, max(0, self.size - width), max(0, self.size - height)]  # left, top, right, bottom
        if padding == [0, 0, 0, 0]:
            return inpt
        if isinstance(inpt, tv_tensors.Mask):
            return TF.pad(inpt, padding, fill=0)
        return TF.pad(inpt, padding, fill=[int(m) for m in MEAN])


def training_labels(mask: torch.Tensor) -> torch.Tensor:
    """ADE20k's annotation values as training labels: 0 (unlabelled) -> -1, the ignore index; k -> k - 1.

    Example:
        >>> training_labels(torch.tensor([0, 1, 150], dtype=torch.uint8)).tolist()
        [-1, 0, 149]
    """
    return mask.as_subclass(torch.Tensor).long() - 1


class ToTrainingLabels(v2.Transform):
    """Plain tensors out: uint8 image ``(3, H, W)`` and the int64 ``training_labels`` of the mask."""

    def transform(self, inpt, params: dict):
        if isinstance(inpt, tv_tensors.Mask):
            return training_labels(inpt)
        return inpt.as_subclass(torch.Tensor)


def train_transform(size: int) -> v2.Compose:
    """The reference training augmentation for ``size x size`` crops (512 at full scale)."""
    return v2.Compose([
        RandomSquareResize(size),
        ClassBalancedCrop(size),
        v2.RandomHorizontalFlip(p=0.5),
        PhotometricDistortion(),
        PadToSize(size),
        ToTrainingLabels(),
    ])


def eval_transform(size: int) -> v2.Compose:
    """The reference evaluation preprocessing: a square resize to ``size x size``."""
    return v2.Compose([v2.Resize((size, size), antialias=True), ToTrainingLabels()])


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 or float images on the 0-255 scale ``(N, 3, H, W)`` -> normalized float images."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() - mean) / std

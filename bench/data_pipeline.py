"""The data pipeline: images per second that one loader worker makes with the reference's augmentation.

The reference trained 128 epochs of 20,096 ADE20k training images (157 batches of 128) in 3.5 hours on 8 A100s: about
26 images per second per GPU, which the GPU's loader workers must supply. This measures what one
worker makes: one process, ``num_workers=0``, torch limited to one thread (as DataLoader workers are),
on generated ADE-sized pairs (683 x 512 JPEGs, quality 90, and 8-bit PNG labels of the built-in
scenes, written in the ADEChallengeData2016 layout to a temporary folder).

The pipeline is segkit's: ``segkit.data.ADE20k`` with the a100 profile's ``train_transform(512)``
(square resize by s ~ U(0.5, 2), class-balanced 512 crop, flip, photometric distortion, pad),
through ``build_loaders``' training loader at the a100 profile's per-GPU batch of 16. The peer is the
same augmentation written with PIL and NumPy only (``PlainADE20k``, below: PIL's antialiased
bilinear resize, NumPy crop and pad, PIL's ``ImageEnhance`` blends and an HSV hue shift as
torchvision's PIL backend did), through the same loader settings. The two draw their random numbers
differently, so their outputs are alike in distribution, not in pixels.

Besides images per second through the loader, each pipeline's time per image is split into decoding
(JPEG and PNG to arrays), each augmentation step, and collating (stacking a batch), measured one part
at a time on the same images.

    .venv/bin/python bench/data_pipeline.py            # 64 images, 3 passes (under a minute)
    .venv/bin/python bench/data_pipeline.py --quick    # smoke run: 8 images, 1 pass

Prints images per second of each pipeline and their ratio, the split, and how many workers feed one
GPU at the reference's pace (target: one worker makes at least 6.5 images per second).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from measure import host_line
from PIL import Image, ImageEnhance
from torch.utils.data import Dataset, default_collate

from segkit.data import ADE20k, build_loaders, find_pairs
from segkit.profiles import get_profile
from segkit.scenes import render_scene
from segkit.transforms import MEAN, train_transform

#: The reference job: 128 epochs of 20,096 images (157 batches of 128) in 3.5 hours on 8 GPUs.
REFERENCE_EPOCHS, ADE20K_TRAIN_IMAGES, REFERENCE_HOURS, REFERENCE_GPUS = 128, 20096, 3.5, 8
TARGET_IMAGES_PER_SECOND = 6.5
#: ADE20k's typical image: 683 x 512 (width x height); the generated JPEGs' quality.
ADE_WIDTH, ADE_HEIGHT, JPEG_QUALITY = 683, 512, 90


def reference_pace() -> float:
    """Images per second per GPU that the reference's run consumed."""
    return REFERENCE_EPOCHS * ADE20K_TRAIN_IMAGES / (REFERENCE_HOURS * 3600) / REFERENCE_GPUS


def write_ade_sized(root: Path, images: int) -> Path:
    """``images`` generated scenes at ADE20k's size, in the ADEChallengeData2016 training layout."""
    (root / "images" / "training").mkdir(parents=True)
    (root / "annotations" / "training").mkdir(parents=True)
    for index in range(1, images + 1):
        image, label = render_scene(np.random.default_rng(index), ADE_HEIGHT, ADE_WIDTH)
        name = f"ADE_train_{index:08d}"
        Image.fromarray(image).save(root / "images" / "training" / f"{name}.jpg", quality=JPEG_QUALITY)
        Image.fromarray(label).save(root / "annotations" / "training" / f"{name}.png")
    return root


# --- the peer: the same augmentation with PIL and NumPy ---
# Each step takes and returns (image, mask): PIL images until the crop is chosen, then a PIL image and
# a NumPy mask, NumPy arrays after padding, and torch tensors at the end, as segkit's dataset returns.

def plain_resize(image, mask, rng: np.random.Generator, size: int):
    """Square resize to ``int(size * s)``, s ~ U(0.5, 2): bilinear image (PIL antialiases), nearest mask."""
    side = int(size * rng.uniform(0.5, 2.0))
    return image.resize((side, side), Image.BILINEAR), mask.resize((side, side), Image.NEAREST)


def plain_crop(image, mask, rng: np.random.Generator, size: int, max_class_ratio: float = 0.75, retries: int = 10):
    """A random crop whose largest labelled class covers under 75% of it (up to 10 tries), as segkit's."""
    labels = np.asarray(mask)
    height, width = labels.shape
    crop_h, crop_w = min(size, height), min(size, width)
    for _ in range(retries):
        top, left = int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))
        counts = np.bincount(labels[top:top + crop_h, left:left + crop_w].ravel())[1:]  # labelled classes only
        counts = counts[counts > 0]
        if len(counts) > 1 and counts.max() < max_class_ratio * counts.sum():
            break
    return image.crop((left, top, left + crop_w, top + crop_h)), labels[top:top + crop_h, left:left + crop_w]


def plain_flip(image, mask, rng: np.random.Generator, size: int):
    if rng.random() < 0.5:
        return image.transpose(Image.FLIP_LEFT_RIGHT), mask[:, ::-1]
    return image, mask


def adjust_hue(image: Image.Image, shift: float) -> Image.Image:
    """Rotate the hue by ``shift`` turns (in [-0.5, 0.5]), through PIL's HSV."""
    hue, saturation, value = image.convert("HSV").split()
    rotated = np.asarray(hue) + np.uint8(round(shift * 255) % 256)  # uint8: wraps around the circle
    return Image.merge("HSV", (Image.fromarray(rotated), saturation, value)).convert("RGB")


def plain_photometric(image, mask, rng: np.random.Generator, size: int, p: float = 0.5):
    """Brightness, contrast, saturation, hue, each with probability 0.5; contrast first or last at random."""
    def maybe(low: float, high: float) -> float | None:
        return rng.uniform(low, high) if rng.random() < p else None

    brightness, contrast = maybe(1 - 32 / 255, 1 + 32 / 255), maybe(0.5, 1.5)
    contrast_first = rng.random() < 0.5
    saturation, hue = maybe(0.5, 1.5), maybe(-18 / 255, 18 / 255)
    if brightness is not None:
        image = ImageEnhance.Brightness(image).enhance(brightness)
    if contrast_first and contrast is not None:
        image = ImageEnhance.Contrast(image).enhance(contrast)
    if saturation is not None:
        image = ImageEnhance.Color(image).enhance(saturation)
    if hue is not None:
        image = adjust_hue(image, hue)
    if not contrast_first and contrast is not None:
        image = ImageEnhance.Contrast(image).enhance(contrast)
    return image, mask


def plain_pad(image, mask, rng: np.random.Generator, size: int):
    """The image as a NumPy array; padded at the bottom and right to ``size x size`` if smaller, the image with
    the dataset mean and the mask with 0 (ignored)."""
    pixels = np.asarray(image)
    height, width = mask.shape
    if (height, width) == (size, size):
        return pixels, mask
    padded = np.empty((size, size, 3), dtype=np.uint8)
    padded[...] = [int(m) for m in MEAN]
    padded[:height, :width] = pixels
    padded_mask = np.zeros((size, size), dtype=np.uint8)
    padded_mask[:height, :width] = mask
    return padded, padded_mask


def plain_to_tensors(image, mask, rng: np.random.Generator, size: int):
    """uint8 image ``(3, H, W)`` and int64 mask with 0 -> -1 and k -> k - 1, as segkit's dataset returns."""
    channels_first = np.ascontiguousarray(image.transpose(2, 0, 1))  # a contiguous copy, as segkit's is
    return torch.from_numpy(channels_first), torch.from_numpy(mask.astype(np.int64) - 1)


PLAIN_STEPS = [plain_resize, plain_crop, plain_flip, plain_photometric, plain_pad, plain_to_tensors]


class PlainADE20k(Dataset):
    """The training pairs of an ADE20k folder, decoded with PIL and augmented with ``PLAIN_STEPS``."""

    def __init__(self, root: Path, size: int, seed: int = 0):
        self.pairs = find_pairs(root, "training")
        self.size = size
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[Image.Image, Image.Image]:
        image_path, label_path = self.pairs[index]
        image, mask = Image.open(image_path), Image.open(label_path)
        image.load()
        mask.load()
        return image.convert("RGB"), mask

    def augment(self, image: Image.Image, mask: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        for step in PLAIN_STEPS:
            image, mask = step(image, mask, self.rng, self.size)
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.augment(*self.load(index))


# --- measuring ---

def loader_images_per_second(dataset: Dataset, batch: int, passes: int) -> float:
    """Images per second through segkit's training loader (``num_workers=0``), from the median batch time
    after one warm-up batch."""
    loader, _ = build_loaders(dataset, dataset, batch, seed=0, num_workers=0)
    seconds = []
    for epoch in range(passes):
        loader.sampler.set_epoch(epoch)
        started = time.perf_counter()
        for _ in loader:
            seconds.append(time.perf_counter() - started)
            started = time.perf_counter()
    return batch / statistics.median(seconds[1:] or seconds)


def split_seconds(load: Callable, steps: list[tuple[str, Callable]], images: int, batch: int,
                  passes: int) -> dict[str, float]:
    """Seconds per image of decoding, of each augmentation step and of collating batches of ``batch``."""
    seconds = {"decode": 0.0, **{name: 0.0 for name, _ in steps}}
    collate_seconds, collated = 0.0, 0
    for _ in range(passes):
        started = time.perf_counter()
        decoded = [load(index) for index in range(images)]
        seconds["decode"] += time.perf_counter() - started
        outputs = []
        for pair in decoded:
            for name, step in steps:
                started = time.perf_counter()
                pair = step(*pair)
                seconds[name] += time.perf_counter() - started
            outputs.append(pair)
        started = time.perf_counter()
        for first in range(0, images - batch + 1, batch):  # whole batches, as the loader drops the last
            default_collate(outputs[first:first + batch])
        collate_seconds += time.perf_counter() - started
        collated += images // batch * batch
    return {**{name: total / (passes * images) for name, total in seconds.items()},
            "collate": collate_seconds / collated}


def segkit_steps(dataset: ADE20k) -> list[tuple[str, Callable]]:
    """segkit's training transform, one named step per transform of its Compose."""
    return [(type(transform).__name__, transform) for transform in dataset.transform.transforms]


def plain_steps(dataset: PlainADE20k) -> list[tuple[str, Callable]]:
    """The plain augmentation, one named step per function of ``PLAIN_STEPS``."""
    return [(step.__name__, lambda image, mask, step=step: step(image, mask, dataset.rng, dataset.size))
            for step in PLAIN_STEPS]


def print_split(label: str, split: dict[str, float]) -> None:
    """One pipeline's time per image: decode, augmentation and collate, then each augmentation step."""
    augment = sum(seconds for name, seconds in split.items() if name not in ("decode", "collate"))
    total = split["decode"] + augment + split["collate"]
    print(f"  {label}: {1000 * total:.1f} ms/image = decode {1000 * split['decode']:.1f} "
          f"({split['decode'] / total:.0%}) + augmentation {1000 * augment:.1f} ({augment / total:.0%}) "
          f"+ collate {1000 * split['collate']:.1f} ({split['collate'] / total:.0%})")
    steps = [name for name in split if name not in ("decode", "collate")]
    print("    augmentation steps, ms/image: " + ", ".join(f"{name} {1000 * split[name]:.1f}" for name in steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 images, one pass")
    parser.add_argument("--images", type=int, default=64, help="generated training pairs")
    parser.add_argument("--passes", type=int, default=3, help="passes over the images per measurement")
    args = parser.parse_args()
    if args.quick:
        args.images, args.passes = 8, 1
    torch.set_num_threads(1)  # as in a DataLoader worker
    profile = get_profile("a100")
    size = profile.image_size
    batch = min(profile.global_batch_size // REFERENCE_GPUS, args.images)  # 16 per GPU in the reference
    print(host_line())
    with tempfile.TemporaryDirectory() as folder:
        root = write_ade_sized(Path(folder), args.images)
        jpeg_kib = statistics.mean(path.stat().st_size for path in (root / "images" / "training").iterdir()) / 1024
        print(f"{args.images} generated {ADE_WIDTH}x{ADE_HEIGHT} JPEG (quality {JPEG_QUALITY}, {jpeg_kib:.0f} KiB "
              f"on average) + PNG pairs; "
              f"{profile.name} profile's augmentation at {size}; one process, torch threads 1, batch {batch}; "
              f"{args.passes} pass(es)")
        segkit = ADE20k(root, "training", train_transform(size))
        plain = PlainADE20k(root, size)
        rates = {"segkit": loader_images_per_second(segkit, batch, args.passes),
                 "plain": loader_images_per_second(plain, batch, args.passes)}
        print(f"  through the loader: segkit (torchvision v2) {rates['segkit']:.2f} images/s, plain PIL/NumPy "
              f"{rates['plain']:.2f} images/s; time per image segkit / plain {rates['plain'] / rates['segkit']:.2f}x")
        print_split("segkit", split_seconds(segkit.load, segkit_steps(segkit), args.images, batch, args.passes))
        print_split("plain ", split_seconds(plain.load, plain_steps(plain), args.images, batch, args.passes))
    pace = reference_pace()
    print(f"reference pace: {REFERENCE_EPOCHS} epochs x {ADE20K_TRAIN_IMAGES:,} images / {REFERENCE_HOURS} h / "
          f"{REFERENCE_GPUS} GPUs = {pace:.1f} images/s per GPU")
    for name, rate in rates.items():
        print(f"  {name}: {math.ceil(pace / rate)} workers per GPU at this host's speed (the {profile.name} profile "
              f"starts {profile.num_workers}); one worker {rate:.2f} images/s "
              f"({'meets' if rate >= TARGET_IMAGES_PER_SECOND else 'misses'} the {TARGET_IMAGES_PER_SECOND} target)")


if __name__ == "__main__":
    main()

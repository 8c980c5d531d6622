"""Pretraining: the laptop's ImageNet.

The reference fine-tunes a ResNet-101 pretrained on ImageNet. Nothing can be downloaded on a
laptop kit, so the laptop profile's backbone is pretrained here, once, on a larger set of
built-in scenes drawn with another seed (no image is shared with the training set).

The pretext task is segmentation of those other scenes, by a DeepLabV3+ whose head is thrown
away: only the backbone is kept, so the downstream run starts, as after ImageNet, from a trained
backbone and a head at random. Segmentation was chosen over the ImageNet-like alternative,
image-level classification (which classes cover at least ``presence_threshold`` of a crop,
``task="classification"``), by measurement: with it the laptop baseline came closer to the knee
of its learning curve (docs/laptop-regime.md, candidates S2-T2 against C1-C10). It is the more
optimistic stand-in: the scenes share the training set's classes and style, as ImageNet shares
many of ADE20k's object classes but not its labels.

The result is a torchvision ResNet state dict (``fc`` included, as torchvision's files), cached
(``segkit.cache``) as ``$SEGKIT_DATA/pretrained/{backbone}-scenes-{fingerprint}.pth`` beside a provenance file
(``.json``: the command, settings, versions, thread count, time and the weights' SHA-256). It is
loaded through the same code path as a local ImageNet file (``segkit.model.load_backbone_weights``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from segkit import cache
from segkit.data import open_dataset
from segkit.errors import ConfigError, WeightsError
from segkit.model import BACKBONES, build_model, kaiming_init
from segkit.scenes import GENERATOR_VERSION, builtin_scenes
from segkit.transforms import eval_transform, normalize

#: Bump when the pretraining procedure changes, so cached weights are made again.
PRETRAINING_VERSION = 1
#: The pretext tasks ``pretrain`` knows.
PRETEXT_TASKS = ("classification", "segmentation")


@dataclass(frozen=True)
class PretrainingSettings:
    """How the laptop backbone is pretrained. The defaults make the cached weights."""

    backbone: str = "resnet10"  # a key of segkit.model.BACKBONES
    task: str = "segmentation"  # "segmentation" (only the backbone is kept) or "classification" (classes in a crop)
    images: int = 2000  # built-in scenes to pretrain on (the training set has 200)
    data_seed: int = 1  # scenes seed: the built-in training set uses 0, so no image is shared
    image_size: int = 64  # scenes are resized to this square once, then randomly cropped and flipped
    epochs: int = 7  # passes over the images (about 1.5 minutes on 2 cores, generation included)
    batch_size: int = 32
    lr: float = 0.1  # SGD with momentum 0.9, cosine to 0 over the run
    weight_decay: float = 1e-4
    presence_threshold: float = 0.02  # a class is "in" a crop if it covers at least this share of it
    seed: int = 0  # weight init, order and augmentation

    def fingerprint(self) -> str:
        """Eight hex digits naming these settings, the procedure and the scene generator."""
        text = json.dumps([dataclasses.asdict(self), PRETRAINING_VERSION, GENERATOR_VERSION], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes (a ``.pth`` file's own bytes also
    hold its file name, so they differ between two copies of the same weights)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def presence_labels(masks: torch.Tensor, num_classes: int, threshold: float) -> torch.Tensor:
    """Which classes cover at least ``threshold`` of each mask's labelled pixels.

    Shape:
        - masks: ``(N, H, W)`` int64 with -1 for ignored pixels.
        - returns: ``(N, num_classes)`` float 0/1.

    Example:
        >>> presence_labels(torch.tensor([[[0, 0], [1, -1]]]), 3, threshold=0.5).tolist()
        [[1.0, 0.0, 0.0]]
    """
    valid = masks >= 0
    one_hot = F.one_hot(masks.clamp_min(0), num_classes) * valid[..., None]  # (N, H, W, C)
    share = one_hot.sum((1, 2)) / valid.sum((1, 2)).clamp_min(1)[:, None]  # (N, C)
    return (share >= threshold).float()


def random_crops(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator,
                 padding: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad by ``padding`` (reflect; masks with -1), crop back to size at a random offset, flip half."""
    size = images.shape[-1]
    images = F.pad(images, [padding] * 4, mode="reflect")
    masks = F.pad(masks, [padding] * 4, value=-1)
    out_images, out_masks = torch.empty_like(images[..., :size, :size]), torch.empty_like(masks[..., :size, :size])
    offsets = torch.randint(0, 2 * padding + 1, (len(images), 2), generator=generator).tolist()
    flips = torch.rand(len(images), generator=generator).lt(0.5).tolist()
    for index, ((top, left), flip) in enumerate(zip(offsets, flips, strict=True)):
        image = images[index, :, top:top + size, left:left + size]
        mask = masks[index, top:top + size, left:left + size]
        out_images[index], out_masks[index] = (image.flip(-1), mask.flip(-1)) if flip else (image, mask)
    return out_images, out_masks


def pretext_network(settings: PretrainingSettings, num_classes: int) -> tuple[nn.Module, nn.Module]:
    """The network trained on the pretext task, and the backbone inside it that is kept.

    Classification: the torchvision ResNet with a ``num_classes`` classifier (its ``fc`` is kept
    too, as in torchvision's files). Segmentation: DeepLabV3+ at output stride 16 with a 128-wide
    head; only its backbone is kept, so the downstream head starts from scratch as after ImageNet.
    """
    if settings.task == "classification":
        resnet = BACKBONES[settings.backbone]()
        resnet.fc = nn.Linear(resnet.fc.in_features, num_classes)
        resnet.apply(kaiming_init)
        return resnet, resnet
    network = build_model({"backbone": settings.backbone, "output_stride": 16, "head_channels": 128}, num_classes)
    return network, network.backbone


def pretrain(settings: PretrainingSettings, out: str | Path, *, log=print) -> Path:
    """Pretrain a backbone and write it (and its provenance) to ``out``, a ``.pth`` path.

    Deterministic for the same settings, versions and thread count.

    Returns:
        ``out`` as a ``Path``.
    """
    if settings.backbone not in BACKBONES:
        raise ConfigError(f"unknown backbone {settings.backbone!r}; choose one of {', '.join(BACKBONES)}")
    if settings.task not in PRETEXT_TASKS:
        raise ConfigError(f"unknown pretext task {settings.task!r}; choose one of {', '.join(PRETEXT_TASKS)}")
    if settings.images < settings.batch_size:
        raise ConfigError(f"pretraining needs at least one batch: images {settings.images} < batch "
                          f"{settings.batch_size}")
    out = Path(out)
    start = time.monotonic()
    root = builtin_scenes(train_images=settings.images, val_images=1, seed=settings.data_seed)
    dataset = open_dataset(root, "training", eval_transform(settings.image_size))
    pairs = [dataset[index] for index in range(len(dataset))]  # decoded once: a few MB
    images = torch.stack([image for image, _ in pairs])  # (N, 3, S, S) uint8
    masks = torch.stack([mask for _, mask in pairs])  # (N, S, S) int64
    num_classes = dataset.num_classes

    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    network, backbone = pretext_network(settings, num_classes)
    optimizer = torch.optim.SGD(network.parameters(), lr=settings.lr, momentum=0.9,
                                weight_decay=settings.weight_decay)
    steps_per_epoch = len(images) // settings.batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs * steps_per_epoch)
    network.train()
    for epoch in range(settings.epochs):
        order = torch.randperm(len(images), generator=generator)
        total, correct, seen = 0.0, 0.0, 0
        for step in range(steps_per_epoch):
            batch = order[step * settings.batch_size:(step + 1) * settings.batch_size]
            batch_images, batch_masks = random_crops(images[batch], masks[batch], generator,
                                                     padding=settings.image_size // 8)
            logits = network(normalize(batch_images))
            if settings.task == "classification":
                targets = presence_labels(batch_masks, num_classes, settings.presence_threshold)
                loss = F.binary_cross_entropy_with_logits(logits, targets)
                hits = float(((logits > 0) == targets.bool()).float().mean())
            else:
                loss = F.cross_entropy(logits, batch_masks, ignore_index=-1)
                valid = batch_masks >= 0
                hits = float((logits.argmax(1) == batch_masks)[valid].float().mean())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss) * len(batch)
            correct += hits * len(batch)
            seen += len(batch)
        log(f"pretraining epoch {epoch + 1}/{settings.epochs}: loss {total / seen:.4f}, "
            f"{'label' if settings.task == 'classification' else 'pixel'} accuracy {100 * correct / seen:.1f}% "
            f"({time.monotonic() - start:.0f} s)")

    state = {key: value.detach().clone().contiguous() for key, value in backbone.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.stem}.", dir=out.parent))
    try:
        torch.save(state, staging / out.name)
        provenance = {
            "command": f"segkit pretrain --backbone {settings.backbone}",
            "settings": dataclasses.asdict(settings),
            "fingerprint": settings.fingerprint(),
            "pretraining_version": PRETRAINING_VERSION,
            "scene_generator_version": GENERATOR_VERSION,
            "versions": {"python": platform.python_version(), "torch": torch.__version__},
            "threads": torch.get_num_threads(),
            "seconds": round(time.monotonic() - start, 1),
            "final_train_loss": round(total / seen, 5),
            "sha256": weights_sha256(state),
        }
        (staging / out.with_suffix(".json").name).write_text(json.dumps(provenance, indent=1) + "\n")
        os.replace(staging / out.with_suffix(".json").name, out.with_suffix(".json"))
        os.replace(staging / out.name, out)  # the weights land last: a .pth always has its provenance
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def read_provenance(path: str | Path) -> dict:
    """The provenance beside a pretrained ``.pth``; raises ``WeightsError`` if it is missing or does not match."""
    path = Path(path)
    try:
        provenance = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        raise WeightsError(f"pretrained weights {path} have no readable provenance "
                           f"{path.with_suffix('.json')}; delete {path} to make them again") from None
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a cut-short file: RuntimeError, EOFError, UnpicklingError, ...
        raise WeightsError(f"pretrained weights {path} are truncated or not a PyTorch file "
                           f"({str(error).strip().splitlines()[0]}); delete {path} to make them again") from None
    if not isinstance(weights, dict) or provenance.get("sha256") != weights_sha256(weights):
        raise WeightsError(f"pretrained weights {path} do not match the SHA-256 in their provenance; "
                           f"delete {path} to make them again")
    return provenance


def entry_name(settings: PretrainingSettings) -> str:
    """The cache entry (``segkit.cache``) of the weights these settings make; the provenance is beside it."""
    return f"pretrained/{settings.backbone}-scenes-{settings.fingerprint()}.pth"


def pretrained_backbone(backbone: str, task: str = "segmentation", *, settings: dict | None = None,
                        log=print) -> Path:
    """The cached scenes-pretrained weights for ``backbone``, made on first use (about 1.5 minutes).

    ``settings`` changes other fields of ``PretrainingSettings`` (each variant is cached apart). In a
    prefilled cache the weights and their provenance are checked against the instructor's manifest.

    Example:
        ``deeplabv3plus("resnet10", 16, 16, weights=pretrained_backbone("resnet10"))``
    """
    settings = PretrainingSettings(backbone=backbone, task=task, **(settings or {}))
    name = entry_name(settings)
    path = cache.find(name)
    if path is None:
        log(f"pretraining the {backbone} backbone on built-in scenes ({task}), once "
            f"(cached in {cache.cache_folder() / 'pretrained'})")
        path = cache.make(name, lambda out: pretrain(settings, out, log=log))
    if path.is_relative_to(cache.cache_folder()):
        cache.check_against_manifest(cache.cache_folder(), str(Path(name).with_suffix(".json")))
    read_provenance(path)
    return path


def backbone_init(weights: str | None, backbone: str) -> str | None:
    """Backbone init as ``deeplabv3plus`` takes it: ``"scenes"`` (the laptop's ImageNet) becomes the
    cached pretrained file (``segkit.pretraining``), ``"none"`` becomes None."""
    if weights in (None, "none"):
        return None
    if weights == "scenes":
        return str(pretrained_backbone(backbone))
    return weights

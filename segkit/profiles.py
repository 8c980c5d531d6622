"""Profiles: how big a run is, separately from which recipe it follows.

A recipe says *what* training does (algorithms, schedule, relative duration); a profile says on
what and at which size: image size, backbone, batch, precision, and ``epoch_scale``, the one
number by which ``segkit.recipes.scale`` shrinks every recipe's duration. ``a100`` is the
reference job (epoch_scale 1); ``cpu`` is the laptop regime (docs/laptop-regime.md); ``scratch`` is
the first release's laptop regime, trained from scratch; ``tiny`` is for tests and smoke runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from segkit.errors import ConfigError


@dataclass(frozen=True)
class Profile:
    """The size of a run. Every field is fixed for all recipes of a profile."""

    name: str
    image_size: int  # training crop and evaluation resize, pixels (512 in the reference)
    backbone: str  # torchvision ResNet (resnet101 in the reference)
    output_stride: int  # 8 in the reference; 16 halves the head's cost
    head_channels: int  # ASPP/decoder width (512 in the reference)
    weights: str | None  # backbone init: None (random), "imagenet" (download), "scenes" (segkit pretrain) or a .pth
    global_batch_size: int  # images per optimizer step over all GPUs (128 in the reference)
    microbatch_size: int | str  # per-device microbatch: an int, or "auto" (GPU only)
    precision: str  # Composer precision: "fp32" on CPU, "amp_fp16" on GPU
    epoch_scale: float  # profile epochs per reference epoch: recipe durations are multiplied by it
    default_data: str | None  # data used when none is given: "scenes" (built-in) or None (must be given)
    scenes_train_images: int  # size of the built-in set this profile generates
    scenes_val_images: int
    num_workers: int  # DataLoader worker processes per device
    sync_batchnorm: bool  # BatchNorm statistics over all GPUs (the reference's yaml: true)
    device: str  # "cpu" or "gpu"
    sam_rho_scale: float  # SAM's rho multiplier: this model's weight norm at init over the reference model's


PROFILES = {
    # The reference job: MosaicML's DeepLabV3+ on ADE20k, 8xA100 (also runs on fewer GPUs with the
    # same global batch, split over them).
    "a100": Profile(
        name="a100", image_size=512, backbone="resnet101", output_stride=8, head_channels=512,
        weights="imagenet", global_batch_size=128, microbatch_size="auto", precision="amp_fp16",
        epoch_scale=1.0, default_data=None, scenes_train_images=20210, scenes_val_images=2000,
        num_workers=8, sync_batchnorm=True, device="gpu", sam_rho_scale=1.0,
    ),
    # A laptop: 2 CPU cores train the baseline in about 1.5 minutes on the built-in scenes, from a backbone
    # pretrained on other scenes (segkit pretrain, the laptop's ImageNet). Chosen from 16 candidate regimes
    # by the baseline alone (docs/laptop-regime.md): 40 epochs of 200 images in batches of 8 (1,000 steps).
    "cpu": Profile(
        name="cpu", image_size=64, backbone="resnet10", output_stride=16, head_channels=128,
        weights="scenes", global_batch_size=8, microbatch_size=8, precision="fp32",
        epoch_scale=40 / 128, default_data="scenes", scenes_train_images=200, scenes_val_images=96,
        num_workers=0, sync_batchnorm=False, device="cpu", sam_rho_scale=0.301,
    ),
    # The first release's laptop regime, kept to show why the regime matters: ResNet-10 from scratch,
    # batch 16, 16 epochs (192 steps). The recipes do not rank as published here (docs/recipe-study-scratch.md).
    "scratch": Profile(
        name="scratch", image_size=64, backbone="resnet10", output_stride=16, head_channels=128,
        weights=None, global_batch_size=16, microbatch_size=16, precision="fp32",
        epoch_scale=1 / 8, default_data="scenes", scenes_train_images=200, scenes_val_images=96,
        num_workers=0, sync_batchnorm=False, device="cpu", sam_rho_scale=0.301,
    ),
    # Seconds per run: tests, notebook smoke runs, checking a setup.
    "tiny": Profile(
        name="tiny", image_size=32, backbone="resnet10", output_stride=16, head_channels=16,
        weights=None, global_batch_size=4, microbatch_size=4, precision="fp32",
        epoch_scale=1 / 64, default_data="scenes", scenes_train_images=16, scenes_val_images=8,
        num_workers=0, sync_batchnorm=False, device="cpu", sam_rho_scale=0.27,
    ),
}


def get_profile(name: str | Profile) -> Profile:
    """Look a profile up by name (a ``Profile`` passes through).

    Example:
        >>> get_profile("cpu").image_size
        64
    """
    if isinstance(name, Profile):
        return check_profile(name)
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]


def check_profile(profile: Profile) -> Profile:
    """Validate a profile's fields (a custom one may come from ``dataclasses.replace``)."""
    from segkit.model import BACKBONES  # the model module owns the list of backbones

    def fail(field: str, expected: str) -> None:
        raise ConfigError(f"profile field {field!r} must be {expected}, got {getattr(profile, field)!r}")

    if profile.backbone not in BACKBONES:
        raise ConfigError(f"unknown backbone {profile.backbone!r}; choose one of {', '.join(BACKBONES)}")
    for field in ("image_size", "head_channels", "global_batch_size"):
        value = getattr(profile, field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            fail(field, "a positive integer")
    if profile.output_stride not in (8, 16):
        fail("output_stride", "8 or 16")
    if not isinstance(profile.epoch_scale, (int, float)) or not 0 < profile.epoch_scale <= 1:
        fail("epoch_scale", "a number in (0, 1]")
    if not isinstance(profile.sam_rho_scale, (int, float)) or not 0 < profile.sam_rho_scale <= 1:
        fail("sam_rho_scale", "a number in (0, 1]")
    if profile.device not in ("cpu", "gpu"):
        fail("device", "'cpu' or 'gpu'")
    return profile

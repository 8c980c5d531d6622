"""Profiles: how big a run is, separately from which recipe it follows.

A recipe says *what* training does (algorithms, schedule, relative duration); a profile says on
what and at which size: image size, backbone, batch, precision, and ``epoch_scale``, the one
number by which ``segkit.recipes.scale`` shrinks every recipe's duration. ``a100`` is the
reference job (epoch_scale 1); ``gpu`` is the reference model and data on one GPU, its schedule
derived from a step's FLOPs and an assumed speed so that the baseline takes about an hour
(``gpu_epoch_scale``); ``cpu`` is the laptop regime (docs/laptop-regime.md); ``scratch`` is the
first release's laptop regime, trained from scratch; ``tiny`` is for tests and smoke runs.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from segkit.errors import ConfigError
from segkit.scenes import DEFAULT_TRAIN_IMAGES, DEFAULT_VAL_IMAGES


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
    # BatchNorm statistics over all GPUs of a multi-GPU run. The sources disagree: mosaicml/examples' yaml,
    # whose loss, head and schedule a100 follows, has sync_bn true; Composer's optimized yaml (CE only) false.
    sync_batchnorm: bool
    device: str  # "cpu" or "gpu"
    # SAM's rho multiplier: this model's weight norm at init over the reference model's; None computes it
    # (rho_scale), so a profile with a new backbone or head needs no number pasted in
    sam_rho_scale: float | None = None
    architecture: str = "deeplabv3plus"  # the network, a key of segkit.model.ARCHITECTURES
    # torch.compile the network and the loss (Composer's compile_config): opt-in, as compiling costs minutes
    # at the start and changes results only at rounding level
    compile: bool = False


#: FLOPs to train on one image of the reference model (DeepLabV3+ ResNet-101, output stride 8, 512x512,
#: 150 classes): its forward is 507.2 GFLOP (torch.utils.flop_counter; tests/system/test_gpu_check.py counts
#: it again), and the backward about twice that (gradients of inputs and of weights), 1.52 TFLOP in all.
REFERENCE_TRAIN_FLOPS_PER_IMAGE = 3 * 507.2e9
#: Sustained training speed assumed for one GPU under AMP, FLOP/s: what the reference job achieved per
#: A100. Its baseline trained 128 epochs of 20,096 images in 3.5 h on 8 GPUs (evaluations included):
#: 204 images/s, 25.5 per GPU, x 1.52 TFLOP = 38.8 TFLOP/s (12% of the A100's 312 TFLOP/s peak),
#: rounded to 40. An H100 is faster: bench/gpu_check.py measures it and prints the epoch_scale it gives.
GPU_THROUGHPUT_ASSUMPTION = 40e12
#: The time the gpu profile gives the baseline recipe.
GPU_BASELINE_SECONDS = 3600
#: Images the reference baseline trains on: 128 epochs of 157 batches of 128 (20,096 of the 20,206 images an
#: epoch sees: ADE20k's 20,210 less 4 grayscale ones, the last partial batch dropped; docs/recipes.md).
REFERENCE_BASELINE_IMAGES = 128 * 157 * 128
#: The reference model's weight norm at initialization (DeepLabV3+ ResNet-101, output stride 8, head 512,
#: 150 classes: segkit.model.weight_norm, seed 0); tests/library/test_recipes.py computes it again.
REFERENCE_WEIGHT_NORM = 438.91
#: Classes of the model whose norm a computed sam_rho_scale uses: the built-in scenes' (the classifier
#: is a small part of the norm: with ADE20k's 150 the cpu profile's ratio moves from 0.3008 to 0.3021).
RHO_SCALE_CLASSES = 16


def gpu_epoch_scale(flops_per_second: float = GPU_THROUGHPUT_ASSUMPTION) -> float:
    """The epoch_scale at which the baseline trains ``GPU_BASELINE_SECONDS`` on one GPU that sustains
    ``flops_per_second``: the images it trains in that time over the reference baseline's images.

    At the assumed 40 TFLOP/s: 3,600 s x 40 TFLOP/s / 1.52 TFLOP = 94,600 images, over 128 x 20,096:
    0.0368, so the baseline's 128 epochs become 5 (1.06 h) and hot's 240 become 9.

    Example:
        >>> round(gpu_epoch_scale(), 4)
        0.0368
    """
    images = GPU_BASELINE_SECONDS * flops_per_second / REFERENCE_TRAIN_FLOPS_PER_IMAGE
    return images / REFERENCE_BASELINE_IMAGES


PROFILES = {
    # The reference job: MosaicML's DeepLabV3+ on ADE20k, 8xA100 (also runs on fewer GPUs with the
    # same global batch, split over them).
    "a100": Profile(
        name="a100", image_size=512, backbone="resnet101", output_stride=8, head_channels=512,
        weights="imagenet", global_batch_size=128, microbatch_size="auto", precision="amp_fp16",
        epoch_scale=1.0, default_data=None, scenes_train_images=20210, scenes_val_images=2000,
        num_workers=8, sync_batchnorm=True, device="gpu", sam_rho_scale=1.0,  # the reference model: 1
    ),
    # One GPU (a workshop's JupyterHub, a lent H100): the reference model, data and batch, the baseline in
    # about an hour. The batch stays 128 so that lr 0.08 and the step-counted EMA and SAM mean what they
    # do in the reference; a step then costs 128 x 1.52 TFLOP = 195 TFLOP, 4.9 s at the assumed
    # 40 TFLOP/s, about 740 steps an hour, in microbatches that fit ("auto"). epoch_scale: gpu_epoch_scale().
    # amp_fp16 as the reference: the published numbers, and GPUs without bf16 (T4, V100) run it too.
    "gpu": Profile(
        name="gpu", image_size=512, backbone="resnet101", output_stride=8, head_channels=512,
        weights="imagenet", global_batch_size=128, microbatch_size="auto", precision="amp_fp16",
        epoch_scale=gpu_epoch_scale(), default_data=None, scenes_train_images=20210, scenes_val_images=2000,
        num_workers=8, sync_batchnorm=False, device="gpu", sam_rho_scale=1.0,
    ),
    # A laptop: 2 CPU cores train the baseline in about 1.5 minutes on the built-in scenes, from a backbone
    # pretrained on other scenes (segkit pretrain, the laptop's ImageNet). Chosen from 16 candidate regimes
    # by the baseline alone (docs/laptop-regime.md): 40 epochs of 200 images in batches of 8 (1,000 steps).
    "cpu": Profile(
        name="cpu", image_size=64, backbone="resnet10", output_stride=16, head_channels=128,
        weights="scenes", global_batch_size=8, microbatch_size=8, precision="fp32",
        epoch_scale=40 / 128, default_data="scenes", scenes_train_images=DEFAULT_TRAIN_IMAGES,
        scenes_val_images=DEFAULT_VAL_IMAGES,
        num_workers=0, sync_batchnorm=False, device="cpu",
    ),
    # The first release's laptop regime, kept to show why the regime matters: ResNet-10 from scratch,
    # batch 16, 16 epochs (192 steps). The recipes do not rank as published here (docs/recipe-study-scratch.md).
    "scratch": Profile(
        name="scratch", image_size=64, backbone="resnet10", output_stride=16, head_channels=128,
        weights=None, global_batch_size=16, microbatch_size=16, precision="fp32",
        epoch_scale=1 / 8, default_data="scenes", scenes_train_images=DEFAULT_TRAIN_IMAGES,
        scenes_val_images=DEFAULT_VAL_IMAGES,
        num_workers=0, sync_batchnorm=False, device="cpu",
    ),
    # Seconds per run: tests, notebook smoke runs, checking a setup.
    "tiny": Profile(
        name="tiny", image_size=32, backbone="resnet10", output_stride=16, head_channels=16,
        weights=None, global_batch_size=4, microbatch_size=4, precision="fp32",
        epoch_scale=1 / 64, default_data="scenes", scenes_train_images=16, scenes_val_images=8,
        num_workers=0, sync_batchnorm=False, device="cpu",
    ),
}


def get_profile(name: str | Profile) -> Profile:
    """Look a profile up by name (a ``Profile`` is checked), with its ``sam_rho_scale`` computed if None.

    Example:
        >>> get_profile("cpu").image_size, get_profile("cpu").sam_rho_scale
        (64, 0.301)
    """
    if isinstance(name, Profile):
        profile = check_profile(name)
    elif name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    else:
        profile = PROFILES[name]
    if profile.sam_rho_scale is None:
        profile = dataclasses.replace(profile, sam_rho_scale=rho_scale(profile.architecture, profile.backbone,
                                                                       profile.output_stride, profile.head_channels))
    return profile


@functools.cache
def rho_scale(architecture: str, backbone: str, output_stride: int, head_channels: int) -> float:
    """SAM's rho multiplier for a model: its weight norm at initialization over the reference model's,
    to 3 decimals. SAM's radius is a distance in weight space, so rho keeps its share of the norm.

    Example:
        >>> rho_scale("deeplabv3plus", "resnet10", 16, 16)
        0.27
    """
    from segkit.model import weight_norm

    norm = weight_norm(backbone, RHO_SCALE_CLASSES, output_stride, head_channels, architecture=architecture)
    return round(norm / REFERENCE_WEIGHT_NORM, 3)


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
    if profile.sam_rho_scale is not None and (not isinstance(profile.sam_rho_scale, (int, float))
                                              or not 0 < profile.sam_rho_scale <= 1):
        fail("sam_rho_scale", "a number in (0, 1], or None to compute it")
    from segkit.model import ARCHITECTURES

    if profile.architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {profile.architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    from segkit.devices import check_device_settings

    try:
        check_device_settings(profile.device, profile.precision, profile.microbatch_size)
    except ConfigError as error:
        raise ConfigError(f"profile {profile.name!r}: {error}") from None
    return profile

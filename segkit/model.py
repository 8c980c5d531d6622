"""DeepLabV3+ with a torchvision ResNet backbone, as in MosaicML's ADE20k recipes.

The head is mmsegmentation's ``DepthwiseSeparableASPPHead``, the one the reference used:
image pooling plus a 1x1 branch and three depthwise-separable atrous branches, a 48-channel
projection of the stride-4 features, two separable 3x3 convolutions and a 1x1 classifier.
The model returns one logits tensor ``(N, C, H, W)`` at input resolution.

Read bottom-up: layers, then the head, then the backbone, then the model and its builder.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from segkit.errors import ConfigError, WeightsError


def resnet10() -> torchvision.models.ResNet:
    """ResNet-10: torchvision's ResNet with one basic block per stage, for CPU profiles.

    Half the depth of ResNet-18 at the same widths; on 2 CPU cores it trains the built-in scenes
    to a higher mIoU per second than ResNet-18. torchvision publishes no ImageNet weights for it.
    """
    return torchvision.models.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1])


#: Backbones ``deeplabv3plus`` accepts: torchvision ResNets by name.
BACKBONES = {
    "resnet10": resnet10,
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
    "resnet101": torchvision.models.resnet101,
}

#: torchvision's ImageNet weights per backbone; V2 for resnet50/101 as the reference.
IMAGENET_WEIGHTS = {
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": torchvision.models.ResNet34_Weights.IMAGENET1K_V1,
    "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V2,
    "resnet101": torchvision.models.ResNet101_Weights.IMAGENET1K_V2,
}

#: ASPP rates per output stride. The reference uses 12/24/36 at stride 8; at stride 16 the
#: feature map is half as large, so the rates halve to see the same image context.
ASPP_RATES = {8: (12, 24, 36), 16: (6, 12, 18)}


class ConvBNReLU(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> ReLU, mmseg's ``ConvModule`` with BN and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1,
                 groups: int = 1):
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation,
                      groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise 3x3 then pointwise 1x1, each with BN and ReLU (mmseg's separable module)."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1):
        super().__init__(
            ConvBNReLU(in_channels, in_channels, 3, dilation=dilation, groups=in_channels),
            ConvBNReLU(in_channels, out_channels, 1),
        )


class ImagePooling(nn.Module):
    """The ASPP branch that sees the whole image: global average, 1x1 conv, broadcast back."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.project = ConvBNReLU(in_channels, out_channels, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = self.project(F.adaptive_avg_pool2d(features, 1))  # (N, C, 1, 1)
        return pooled.expand(-1, -1, *features.shape[-2:])


class DeepLabV3PlusHead(nn.Module):
    """Depthwise-separable ASPP on the deep features, fused with projected stride-4 features.

    Args:
        in_channels: channels of the backbone's last stage (2048 for ResNet-50/101).
        low_level_channels: channels of the backbone's first stage (256 for ResNet-50/101).
        num_classes: number of output classes.
        rates: dilation rates of the three atrous branches.
        channels: width of the ASPP branches and the decoder (512 in the reference).
        low_level_projection: width of the stride-4 projection (48 in the reference).
        dropout: Dropout2d probability before the classifier (0.1 in the reference).
    """

    def __init__(self, in_channels: int, low_level_channels: int, num_classes: int,
                 rates: tuple[int, ...], channels: int = 512, low_level_projection: int = 48,
                 dropout: float = 0.1):
        super().__init__()
        branches = [ImagePooling(in_channels, channels), ConvBNReLU(in_channels, channels, 1)]
        branches += [SeparableConvBNReLU(in_channels, channels, dilation=rate) for rate in rates]
        self.aspp = nn.ModuleList(branches)
        self.aspp_fuse = ConvBNReLU(len(branches) * channels, channels, 3)
        self.low_level_project = ConvBNReLU(low_level_channels, low_level_projection, 1)
        self.decoder = nn.Sequential(
            SeparableConvBNReLU(channels + low_level_projection, channels),
            SeparableConvBNReLU(channels, channels),
        )
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1))

    def forward(self, low_level: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        context = self.aspp_fuse(torch.cat([branch(deep) for branch in self.aspp], dim=1))
        context = F.interpolate(context, size=low_level.shape[-2:], mode="bilinear", align_corners=False)
        fused = torch.cat([self.low_level_project(low_level), context], dim=1)  # (N, 48 + C, H/4, W/4)
        return self.classifier(self.decoder(fused))


def dilate_resnet(resnet: torchvision.models.ResNet, output_stride: int) -> None:
    """Trade the strides of the last stages for dilation, in place, as torchvision does.

    torchvision's ``replace_stride_with_dilation`` only supports Bottleneck blocks; this does the
    same for every block type: in a dilated stage the first block keeps the previous dilation and
    loses its stride, the later blocks use the new dilation.
    """
    dilated_stages = {8: ("layer3", "layer4"), 16: ("layer4",), 32: ()}[output_stride]
    dilation = 1
    for stage_name in dilated_stages:
        previous, dilation = dilation, dilation * 2
        for index, block in enumerate(getattr(resnet, stage_name)):
            block_dilation = previous if index == 0 else dilation
            for conv in block.modules():
                if isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3):
                    conv.stride, conv.dilation, conv.padding = (1, 1), (block_dilation,) * 2, (block_dilation,) * 2
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)


class DeepLabV3Plus(nn.Module):
    """A ResNet backbone and a DeepLabV3+ head; ``forward`` returns logits at input size.

    Shape:
        - Input: ``(N, 3, H, W)`` normalized images.
        - Output: ``(N, num_classes, H, W)`` logits.
    """

    def __init__(self, backbone: torchvision.models.ResNet, head: DeepLabV3PlusHead):
        super().__init__()
        del backbone.fc, backbone.avgpool  # classification layers the segmenter never uses
        self.backbone = backbone
        self.head = head

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The backbone's stride-4 features and its last (stride 8 or 16) features."""
        b = self.backbone
        stem = b.maxpool(b.relu(b.bn1(b.conv1(images))))
        low_level = b.layer1(stem)  # stride 4
        deep = b.layer4(b.layer3(b.layer2(low_level)))  # stride 8, 16 or 32
        return low_level, deep

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        low_level, deep = self.features(images)
        logits = self.head(low_level, deep)
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


def kaiming_init(module: nn.Module) -> None:
    """The reference's init: Kaiming-normal conv/linear weights, BatchNorm at identity."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def load_backbone_weights(resnet: torchvision.models.ResNet, backbone: str, weights: str | Path) -> None:
    """Load ImageNet weights into ``resnet``: ``"imagenet"`` (torchvision, online) or a local file.

    A local file is a torchvision ResNet state dict (for example ``resnet101-cd907fc2.pth``),
    loaded with ``weights_only=True`` so that it cannot run code. The classifier (``fc.*``) is
    ignored; every other key must match.
    """
    if str(weights) == "imagenet":
        if backbone not in IMAGENET_WEIGHTS:
            raise WeightsError(f"torchvision has no ImageNet weights for {backbone}; use one of "
                               f"{', '.join(IMAGENET_WEIGHTS)} or weights=None")
        try:
            state = IMAGENET_WEIGHTS[backbone].get_state_dict(progress=False)
        except OSError as error:  # urllib's URLError is an OSError
            url = IMAGENET_WEIGHTS[backbone].url
            raise WeightsError(
                f"could not download ImageNet weights for {backbone} ({error}); download {url} "
                f"elsewhere and pass the file's path as weights"
            ) from None
        source = IMAGENET_WEIGHTS[backbone].url
    else:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist; pass a torchvision ResNet .pth file "
                               f"or 'imagenet'")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise WeightsError(f"weights file {path} holds objects that loading would have to execute; pass a "
                               f"plain torchvision ResNet state dict") from None
        except Exception as error:  # a cut-short or foreign file: RuntimeError, EOFError, ...
            raise WeightsError(f"weights file {path} is truncated or not a PyTorch file "
                               f"({str(error).strip().splitlines()[0]}); pass a torchvision ResNet .pth file, "
                               f"downloaded again if it was cut short") from None
        source = str(path)
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {source} holds a {type(state).__name__}, not a state dict")
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    expected = {key: value.shape for key, value in resnet.state_dict().items() if not key.startswith("fc.")}
    missing = sorted(set(expected) - set(state))
    wrong_shape = [key for key in expected if key in state and state[key].shape != expected[key]]
    if missing or wrong_shape or set(state) - set(expected):
        detail = missing[:1] or wrong_shape[:1] or sorted(set(state) - set(expected))[:1]
        raise WeightsError(f"weights file {source} does not fit a {backbone} backbone (first mismatching "
                           f"key: {detail[0]}); pass the weights of a torchvision {backbone}")
    resnet.load_state_dict(state, strict=False)


def deeplabv3plus(
    backbone: str = "resnet101",
    num_classes: int = 150,
    output_stride: int = 8,
    weights: str | Path | None = None,
    *,
    head_channels: int = 512,
    low_level_projection: int = 48,
    dropout: float = 0.1,
) -> DeepLabV3Plus:
    """Build DeepLabV3+ as in MosaicML's ADE20k recipes.

    Args:
        backbone: one of ``BACKBONES`` (``"resnet101"`` in the reference).
        num_classes: output classes (150 for ADE20k).
        output_stride: 8 (reference) or 16; the backbone's last stages dilate instead of striding.
        weights: ``None`` (random init, never touches the network), ``"imagenet"`` (torchvision's
            ImageNet weights, downloaded) or the path of a local torchvision ResNet state dict.
        head_channels: width of the ASPP head (512 in the reference, smaller for CPU profiles).
        low_level_projection: channels of the stride-4 projection (48 in the reference).
        dropout: Dropout2d before the classifier (0.1 in the reference).

    Returns:
        A ``DeepLabV3Plus`` module mapping ``(N, 3, H, W)`` to logits ``(N, num_classes, H, W)``.

    Example:
        >>> model = deeplabv3plus("resnet18", num_classes=5, output_stride=16, head_channels=32)
        >>> model.eval()(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 5, 64, 64])
    """
    if backbone not in BACKBONES:
        raise ConfigError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    if output_stride not in ASPP_RATES:
        raise ConfigError(f"output_stride must be 8 or 16, got {output_stride!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    resnet = BACKBONES[backbone]()
    dilate_resnet(resnet, output_stride)
    head = DeepLabV3PlusHead(
        in_channels=resnet.fc.in_features,
        low_level_channels=_stage_channels(resnet.layer1),
        num_classes=num_classes,
        rates=ASPP_RATES[output_stride],
        channels=head_channels,
        low_level_projection=low_level_projection,
        dropout=dropout,
    )
    model = DeepLabV3Plus(resnet, head)
    if weights is None:
        model.apply(kaiming_init)
    else:
        head.apply(kaiming_init)
        load_backbone_weights(model.backbone, backbone, weights)
    return model


#: Segmentation networks by name, as a profile's ``architecture`` names them: each is called as
#: ``build(backbone, num_classes, output_stride, weights, head_channels=...)`` and maps ``(N, 3, H, W)``
#: images to ``(N, num_classes, H, W)`` logits. A new network is one entry here (docs/architecture.md).
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"deeplabv3plus": deeplabv3plus}
#: The architecture of a run folder that records none (written before the setting existed).
DEFAULT_ARCHITECTURE = "deeplabv3plus"
#: Model surgery by recipe field: an algorithm that changes the network (and with it the names of its weights,
#: as BlurPool does) is a function ``surgery(module) -> module`` here, applied when the run's plan sets that
#: field. ``apply_surgery`` runs it wherever a run's network is built: before training (so the checkpoint a run
#: resumes from is checked against the network it trained) and before ``model.pt`` is loaded. Empty: none of
#: the reference recipes uses one (docs/architecture.md).
SURGERIES: dict[str, Callable[[nn.Module], nn.Module]] = {}


def apply_surgery(module: nn.Module, plan: Mapping[str, Any]) -> nn.Module:
    """``module`` after the surgery of every ``SURGERIES`` field that ``plan`` (a recipe, as a dict) sets.

    Example:
        >>> net = nn.Linear(2, 2)
        >>> apply_surgery(net, {"epochs": 1}) is net
        True
    """
    for field, surgery in SURGERIES.items():
        if plan.get(field):
            module = surgery(module)
    return module


def build_model(settings: Any, num_classes: int, weights: str | Path | None = None) -> nn.Module:
    """The network a profile describes: a ``Profile``, or a run folder's record of one (``info["profile"]``).

    Example:
        >>> from segkit.profiles import get_profile
        >>> type(build_model(get_profile("tiny"), num_classes=4)).__name__
        'DeepLabV3Plus'
        >>> type(build_model({"backbone": "resnet10", "output_stride": 16, "head_channels": 8}, 4)).__name__
        'DeepLabV3Plus'
    """
    def read(key: str, default: Any = None) -> Any:
        return settings.get(key, default) if isinstance(settings, Mapping) else getattr(settings, key, default)

    architecture = read("architecture") or DEFAULT_ARCHITECTURE
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](read("backbone"), num_classes, read("output_stride"), weights,
                                       head_channels=read("head_channels"))


def forward_flops(settings: Any, num_classes: int, image_size: int) -> float:
    """FLOPs of one image's forward pass through the network ``settings`` describe (``build_model``),
    counted by ``torch.utils.flop_counter`` on the meta device (nothing is computed or allocated).

    Training takes about 3x this (the backward computes gradients for inputs and for weights, each
    about one forward). The backward is not counted: torch's counter overcounts the backward of grouped
    (depthwise) convolutions by the group count (torch 2.7).

    Example:
        >>> from segkit.profiles import get_profile
        >>> round(forward_flops(get_profile("gpu"), 150, 512) / 1e9, 1)  # the reference model
        507.2
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build_model(settings, num_classes)
    images = torch.empty(2, 3, image_size, image_size, device="meta")  # BatchNorm in training needs 2
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(images)
    return counter.get_total_flops() / 2


def _stage_channels(stage: nn.Sequential) -> int:
    """Output channels of a ResNet stage: those of its last BatchNorm."""
    return [m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features


def weight_norm(backbone: str, num_classes: int, output_stride: int, head_channels: int, seed: int = 0,
                architecture: str = DEFAULT_ARCHITECTURE) -> float:
    """The L2 norm of all of a network's weights at initialization (DeepLabV3+'s: Kaiming).

    SAM's radius rho is a distance in weight space, so ``segkit.recipes.scale`` keeps rho's share of
    this norm from the reference model to a smaller one. With millions of weights the norm at
    initialization hardly depends on the seed.

    Example:
        >>> round(weight_norm("resnet10", 16, 16, 128) / weight_norm("resnet10", 16, 16, 128, seed=1), 2)
        1.0
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model({"architecture": architecture, "backbone": backbone, "output_stride": output_stride,
                             "head_channels": head_channels}, num_classes)
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.detach())
                                                       for p in model.parameters()])))

"""DeepLabV3+: output shapes, the dilated backbone, head layout and weight loading from a file."""

from __future__ import annotations

import pytest
import torch
import torchvision

from segkit.errors import ConfigError, WeightsError
from segkit.model import deeplabv3plus


@pytest.mark.parametrize("output_stride", [8, 16])
def test_resnet101_output_shape(output_stride):
    model = deeplabv3plus("resnet101", num_classes=150, output_stride=output_stride).eval()
    with torch.no_grad():
        logits = model(torch.zeros(1, 3, 65, 97))  # odd sizes: output still at input resolution
    assert logits.shape == (1, 150, 65, 97)


def test_reference_head_layout():
    model = deeplabv3plus("resnet101", num_classes=150, output_stride=8)
    head = model.head
    rates = [branch[0][0].dilation[0] for branch in list(head.aspp)[2:]]
    assert rates == [12, 24, 36]
    assert head.aspp[1][0].in_channels == 2048 and head.aspp[1][0].out_channels == 512
    assert head.low_level_project[0].in_channels == 256 and head.low_level_project[0].out_channels == 48
    assert head.classifier[0].p == 0.1 and head.classifier[1].in_channels == 512
    assert head.aspp_fuse[0].in_channels == 5 * 512


@pytest.mark.parametrize("output_stride,dilate", [(8, [False, True, True]), (16, [False, False, True])])
def test_dilation_matches_torchvision(output_stride, dilate):
    ours = deeplabv3plus("resnet101", output_stride=output_stride).backbone
    reference = torchvision.models.resnet101(replace_stride_with_dilation=dilate)
    convs = [(n, m.stride, m.dilation, m.padding) for n, m in ours.named_modules() if isinstance(m, torch.nn.Conv2d)]
    expected = [(n, m.stride, m.dilation, m.padding) for n, m in reference.named_modules()
                if isinstance(m, torch.nn.Conv2d)]
    assert convs == expected


def test_basic_block_backbones_dilate_too():
    model = deeplabv3plus("resnet18", num_classes=3, output_stride=8, head_channels=16).eval()
    with torch.no_grad():
        low, deep = _features(model, torch.zeros(1, 3, 64, 64))
    assert low.shape[-1] == 16 and deep.shape[-1] == 8  # strides 4 and 8


def _features(model, images):
    b = model.backbone
    low = b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(images)))))
    return low, b.layer4(b.layer3(b.layer2(low)))


def test_local_weights_file_is_loaded(tmp_path):
    source = torchvision.models.resnet18()
    path = tmp_path / "resnet18-local.pth"
    torch.save(source.state_dict(), path)
    model = deeplabv3plus("resnet18", num_classes=5, output_stride=16, weights=path, head_channels=16)
    for key, value in source.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(model.backbone.state_dict()[key], value), key


def test_weights_for_another_backbone_are_refused(tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34().state_dict(), path)
    with pytest.raises(WeightsError, match=r"resnet34.pth does not fit a resnet18 backbone"):
        deeplabv3plus("resnet18", weights=path)


def test_weights_file_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": torchvision.models.resnet18}, path)
    with pytest.raises(WeightsError, match=r"evil.pth holds objects that loading would have to execute") as raised:
        deeplabv3plus("resnet18", weights=path)
    assert "\n" not in str(raised.value)


def test_truncated_weights_file_is_one_line(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    path.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(WeightsError, match=r"resnet18.pth is truncated or not a PyTorch file \(.*\); pass a "
                                           r"torchvision ResNet .pth file, downloaded again") as raised:
        deeplabv3plus("resnet18", weights=path)
    assert "\n" not in str(raised.value)


def test_missing_weights_file(tmp_path):
    with pytest.raises(WeightsError, match=r"does not exist"):
        deeplabv3plus("resnet18", weights=tmp_path / "none.pth")


def test_unknown_backbone_lists_choices():
    with pytest.raises(ConfigError, match=r"unknown backbone 'resnet9'.*resnet10, resnet18"):
        deeplabv3plus("resnet9")


def test_no_imagenet_weights_for_resnet10():
    with pytest.raises(WeightsError, match=r"no ImageNet weights for resnet10"):
        deeplabv3plus("resnet10", weights="imagenet")

"""The laptop's ImageNet: pretraining is deterministic, its file is checked against its provenance,
the cache is made once, and the weights load through the same path as ImageNet weights."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from segkit import pretraining
from segkit.errors import ConfigError, WeightsError
from segkit.model import deeplabv3plus
from segkit.pretraining import PretrainingSettings, presence_labels, pretrain, read_provenance
from tests.conftest import run_segkit

SMALL = PretrainingSettings(images=64, epochs=1, batch_size=32, data_seed=5)


def test_pretraining_is_deterministic_and_records_its_provenance(tmp_path):
    first = pretrain(SMALL, tmp_path / "a" / "w.pth", log=lambda line: None)
    second = pretrain(SMALL, tmp_path / "b" / "w.pth", log=lambda line: None)
    provenance = read_provenance(first)
    assert provenance["sha256"] == read_provenance(second)["sha256"]
    assert provenance["settings"] == dataclasses.asdict(SMALL) and provenance["fingerprint"] == SMALL.fingerprint()
    assert {"torch", "python"} <= set(provenance["versions"]) and provenance["command"].startswith("segkit pretrain")
    other = pretrain(dataclasses.replace(SMALL, seed=1), tmp_path / "c" / "w.pth", log=lambda line: None)
    assert read_provenance(other)["sha256"] != provenance["sha256"]


def test_the_command_makes_the_same_file_as_the_function(tmp_path):
    path = pretrain(SMALL, tmp_path / "api.pth", log=lambda line: None)
    done = run_segkit("pretrain", "--out", str(tmp_path / "cli.pth"), "--images", "64", "--epochs", "1")
    assert done.returncode == 0, done.stderr
    # the command uses the default batch (32) and data seed (1): compare it with the same settings
    same = pretrain(dataclasses.replace(SMALL, data_seed=1), tmp_path / "same.pth", log=lambda line: None)
    assert read_provenance(tmp_path / "cli.pth")["sha256"] == read_provenance(same)["sha256"]
    assert read_provenance(path)["sha256"] != read_provenance(same)["sha256"]  # another data seed


def test_changed_weights_do_not_pass_as_pretrained(tmp_path):
    path = pretrain(SMALL, tmp_path / "w.pth", log=lambda line: None)
    state = torch.load(path, weights_only=True)
    state["conv1.weight"][0, 0, 0, 0] += 1
    torch.save(state, path)
    with pytest.raises(WeightsError, match="do not match the SHA-256 in their provenance"):
        read_provenance(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(WeightsError, match="have no readable provenance"):
        read_provenance(path)


def test_the_cache_is_made_once_and_loads_like_imagenet_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGKIT_DATA", str(tmp_path))
    monkeypatch.setattr(pretraining, "PretrainingSettings",
                        lambda **kw: dataclasses.replace(SMALL, **kw))  # the small settings, as the cache's
    lines = []
    path = pretraining.pretrained_backbone("resnet10", log=lines.append)
    assert path.parent == tmp_path / "pretrained" and any("once" in line for line in lines)
    lines.clear()
    assert pretraining.pretrained_backbone("resnet10", log=lines.append) == path and lines == []
    model = deeplabv3plus("resnet10", 16, 16, weights=pretraining.backbone_init("scenes", "resnet10"),
                          head_channels=16)
    saved = torch.load(path, weights_only=True)
    assert torch.equal(model.backbone.conv1.weight, saved["conv1.weight"])
    assert pretraining.backbone_init("none", "resnet10") is None
    assert json.loads(path.with_suffix(".json").read_text())["settings"]["images"] == SMALL.images


def test_segmentation_pretext_keeps_only_the_backbone(tmp_path):
    path = pretrain(dataclasses.replace(SMALL, task="segmentation"), tmp_path / "s.pth", log=lambda line: None)
    keys = torch.load(path, weights_only=True).keys()
    assert "conv1.weight" in keys and not any(key.startswith(("head", "fc")) for key in keys)
    deeplabv3plus("resnet10", 16, 16, weights=path, head_channels=16)  # loads as a backbone


def test_presence_labels_and_bad_settings():
    masks = torch.tensor([[[0, 0, 0, 1], [2, 2, -1, -1]]])
    assert presence_labels(masks, 4, threshold=0.3).tolist() == [[1.0, 0.0, 1.0, 0.0]]
    with pytest.raises(ConfigError, match="unknown pretext task"):
        pretrain(dataclasses.replace(SMALL, task="jigsaw"), "unused.pth")

"""Extending the kit as docs/architecture.md says, each in one place, for real.

A fifth recipe: a copy of the package gets one more recipe function and one line in ``RECIPES``
(nothing else), and then imports, lists it on the command line, builds its table and its figures, and
trains it. A dataset format and a model: one entry each in ``DATASET_FORMATS`` and ``ARCHITECTURES``;
each trains, is recorded in the run folder, and is read back from that record by evaluation.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import tv_tensors

import segkit
from segkit import data
from segkit.errors import DataError
from segkit.inference import evaluate, load_model
from segkit.model import ARCHITECTURES, BACKBONES
from segkit.profiles import get_profile
from tests.conftest import REPO, subprocess_env

SPICY = '''

def spicy() -> Recipe:
    """hot with MixUp twice as strong: a recipe an instructor adds."""
    return dataclasses.replace(hot(), name="spicy", mixup_alpha=1.0)


RECIPES["spicy"] = spicy
'''

CHECK = textwrap.dedent('''
    import sys
    import segkit
    from segkit import recipes
    from segkit.teaching import plots, tables
    from segkit.cli import main

    assert segkit.__file__.startswith(sys.argv[1]), segkit.__file__
    assert list(recipes.RECIPES)[-1] == "spicy"
    main(["recipes"])
    print(tables.recipe_table(recipes.get("spicy"), "tiny", 2))
    assert plots.recipe_color("spicy") not in (plots.OTHER_COLOR, plots.recipe_color("hot"))
    result = segkit.train("spicy", data=sys.argv[2], profile="tiny", duration="2ba", save_folder=sys.argv[3],
                          print_progress=False)
    assert result.run.recipe == "spicy" and result.run.status == "finished"
    figure = plots.comparison_figure([result.run])
    assert figure.data[0].line.color == plots.recipe_color("spicy")
    print(tables.results_table(result.run, None))
    print("trained", result.run.name)
''')


def test_a_fifth_recipe_is_one_function_and_one_line(tmp_path, scenes_root):
    copy = tmp_path / "kit"
    shutil.copytree(REPO / "segkit", copy / "segkit", ignore=shutil.ignore_patterns("__pycache__"))
    recipes_file = copy / "segkit" / "recipes.py"
    recipes_file.write_text(recipes_file.read_text() + SPICY)
    done = subprocess.run([sys.executable, "-c", CHECK, str(copy), str(scenes_root), str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**subprocess_env(), "PYTHONPATH": str(copy)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    listing = done.stdout.splitlines()
    assert any(line.startswith("spicy") and "mixup_alpha=1.0" in line for line in listing)
    assert "trained spicy-tiny-seed17-2ba" in done.stdout
    assert (tmp_path / "runs" / "spicy-tiny-seed17-2ba" / "model.pt").is_file()


class PairedFolders(torch.utils.data.Dataset):
    """A dataset format an instructor adds: ``train/`` and ``val/``, each image ``NAME.jpg`` beside its
    ``NAME_labels.png`` of class indices (0 = unlabelled), four classes. Built as ``DATASET_FORMATS``
    says: ``(root, split, transform, keep_decoded)``, ``num_classes``, ``class_names``, and static
    ``layout_matches`` and ``check_layout``."""

    class_names = ("sky", "ground", "wall", "thing")
    num_classes = 4

    def __init__(self, root, split, transform=None, keep_decoded=False):
        self.root, self.transform = Path(root), transform
        folder = self.root / {"training": "train", "validation": "val"}[split]
        self.images = sorted(folder.glob("*.jpg"))

    @staticmethod
    def layout_matches(root):
        return (Path(root) / "train").is_dir() and (Path(root) / "val").is_dir()

    @staticmethod
    def check_layout(root):
        if not PairedFolders.layout_matches(root):
            raise DataError(f"{root} has no train/ and val/ folders")

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        path = self.images[index]
        image = tv_tensors.Image(torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1))
        labels = tv_tensors.Mask(torch.from_numpy(np.array(Image.open(path.with_name(f"{path.stem}_labels.png")))))
        return self.transform(image, labels)


def paired_folders(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for folder, count in (("train", 8), ("val", 4)):
        (root / folder).mkdir(parents=True)
        for index in range(count):
            labels = np.zeros((40, 48), dtype=np.uint8)
            labels[:20], labels[20:, :24], labels[20:, 24:] = 1, 2, 1 + index % 4
            image = (labels[..., None] * 60 + rng.integers(0, 30, (40, 48, 3))).astype(np.uint8)
            Image.fromarray(image).save(root / folder / f"{index:03d}.jpg")
            Image.fromarray(labels).save(root / folder / f"{index:03d}_labels.png")
    return root


def test_a_dataset_format_is_one_entry_and_the_run_folder_remembers_it(tmp_path, monkeypatch):
    monkeypatch.setitem(data.DATASET_FORMATS, "paired-folders", PairedFolders)
    root = paired_folders(tmp_path / "paired")
    assert data.dataset_format(root) == "paired-folders"
    result = segkit.train(segkit.run_spec("baseline", "tiny", str(root), duration="2ba"),
                          save_folder=tmp_path / "runs", print_progress=False)
    assert result.run.info["data"]["format"] == "paired-folders"
    assert result.run.info["data"]["num_classes"] == 4 and result.run.info["data"]["train_images"] == 8
    # readers build the dataset from the record: evaluation gives the run's own last mIoU
    assert evaluate(result.run.folder)["miou"] == pytest.approx(result.run.final["miou"], abs=1e-4)
    assert isinstance(result.run.dataset("validation"), PairedFolders)


class PoolingHead(nn.Module):
    """A model an instructor adds: the backbone's last features, one 1x1 classifier, upsampled."""

    def __init__(self, backbone, num_classes, output_stride, weights=None, *, head_channels):
        super().__init__()
        resnet = BACKBONES[backbone]()
        self.backbone = nn.Sequential(*list(resnet.children())[:-2])
        self.classifier = nn.Conv2d(resnet.fc.in_features, num_classes, 1)

    def forward(self, images):
        logits = self.classifier(self.backbone(images))
        return nn.functional.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


def test_a_model_is_one_entry_and_the_run_folder_remembers_it(tmp_path, scenes_root, monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, "pooling-head", PoolingHead)
    profile = get_profile(dataclasses.replace(get_profile("tiny"), name="tiny-pooling", architecture="pooling-head",
                                              sam_rho_scale=None))
    assert 0 < profile.sam_rho_scale < get_profile("tiny").sam_rho_scale  # computed: a smaller model
    result = segkit.train(segkit.run_spec("hot", profile, str(scenes_root), duration="2ba"),
                          save_folder=tmp_path / "runs", print_progress=False)
    assert result.run.info["profile"]["architecture"] == "pooling-head"
    model, _ = load_model(result.run.folder)
    assert isinstance(model, PoolingHead)
    assert evaluate(result.run.folder)["miou"] == pytest.approx(result.run.final["miou"], abs=1e-4)

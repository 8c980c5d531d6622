"""Extending the kit as docs/architecture.md says, each in one place, for real.

A fifth recipe: a copy of the package gets one more recipe function and one line in ``RECIPES``
(nothing else), and then imports, lists it on the command line, builds its table and its figures, and
trains it. A training algorithm as a lab switch: label smoothing, in two files of a copy (recipes.py and
losses.py); it trains with MixUp's mixed masks, shows in the lab and its tables, and a run trained before
it existed keeps its name and resumes. An algorithm that renames the weights: BlurPool, in recipes.py and
model.py; its run resumes and its model.pt loads. A dataset format and a model: one entry each in
``DATASET_FORMATS`` and ``ARCHITECTURES``; each trains, is recorded in the run folder, and is read back
from that record by evaluation.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from composer import Callback
from PIL import Image
from torch import nn
from torchvision import tv_tensors

import segkit
from segkit import data, recipes
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
    result = segkit.train(segkit.run_spec("spicy", "tiny", sys.argv[2], duration="2ba"), save_folder=sys.argv[3],
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


#: Label smoothing as a lab switch, as a maintainer would add it: the field, its check, its description and
#: switch in recipes.py; the loss that uses it in losses.py. (old, new) replacements, each found exactly once.
LABEL_SMOOTHING = {
    "recipes.py": [
        ("""    mixup_alpha: float | None = None  # MixUp's Beta(alpha, alpha); None = no MixUp
""", """    mixup_alpha: float | None = None  # MixUp's Beta(alpha, alpha); None = no MixUp
    label_smoothing: float = 0.0  # cross-entropy's target: 1 - s on the truth, s spread over all classes
"""),
        ("""        fail("mixup_alpha", "a number in (0, 100], or null for no MixUp")
""", """        fail("mixup_alpha", "a number in (0, 100], or null for no MixUp")
    if not is_number(recipe.label_smoothing) or not 0 <= recipe.label_smoothing < 1:
        fail("label_smoothing", "a number in [0, 1)")
"""),
        ("""    "mixup_alpha": FieldInfo("MixUp: alpha", "float", step=0.1),
""", """    "mixup_alpha": FieldInfo("MixUp: alpha", "float", step=0.1),
    "label_smoothing": FieldInfo("label smoothing", "float", step=0.05),
"""),
        ("""    "mixup": Switch("MixUp", ("mixup_alpha",), None, "medium"),
""", """    "mixup": Switch("MixUp", ("mixup_alpha",), None, "medium"),
    "label_smoothing": Switch("Label smoothing", ("label_smoothing",), 0.0, on_settings={"label_smoothing": 0.1}),
"""),
    ],
    "losses.py": [
        ("target: Target, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:",
         "target: Target, ignore_index: int = IGNORE_INDEX,\n"
         "                  smoothing: float = 0.0) -> torch.Tensor:"),
        ("  # (N, H, W): log p at the truth\n",
         "  # (N, H, W): log p at the truth\n"
         "        picked = (1 - smoothing) * picked + smoothing * log_probs.mean(1)\n"),
        ("ce_weight: float = 0.375, dice_weight: float = 1.125, ignore_index: int = IGNORE_INDEX):",
         "ce_weight: float = 0.375, dice_weight: float = 1.125, ignore_index: int = IGNORE_INDEX,\n"
         "                 label_smoothing: float = 0.0):"),
        ("""        self.ce_weight, self.dice_weight, self.ignore_index = ce_weight, dice_weight, ignore_index
""", """        self.ce_weight, self.dice_weight, self.ignore_index = ce_weight, dice_weight, ignore_index
        self.label_smoothing = label_smoothing
"""),
        ("cross_entropy(log_probs, target, self.ignore_index)",
         "cross_entropy(log_probs, target, self.ignore_index, self.label_smoothing)"),
        ("return SegmentationLoss(recipe.ce_weight, recipe.dice_weight)",
         "return SegmentationLoss(recipe.ce_weight, recipe.dice_weight, label_smoothing=recipe.label_smoothing)"),
    ],
}

WITH_LABEL_SMOOTHING = textwrap.dedent('''
    import dataclasses, json, sys
    import torch
    from torch.nn import functional as F
    import segkit
    from segkit import recipes
    from segkit.losses import MixedMasks, loss_for
    from segkit.teaching import tables
    from segkit.teaching.recipe_editor import RecipeEditor
    from segkit.teaching.widgets import RecipePicker

    copy, data, runs, older = sys.argv[1:5]
    assert segkit.__file__.startswith(copy), segkit.__file__
    # The lab: a switch no reference recipe introduces, on with its own setting; the tables say "off".
    editor = RecipeEditor("medium")
    assert editor.switches["label_smoothing"] is False
    editor.set("label_smoothing", True)
    smoothed = editor.recipe
    assert smoothed.label_smoothing == 0.1 and smoothed.mixup_alpha == 0.2 and smoothed.name == "custom"
    assert tables.setting(recipes.medium(), "label_smoothing") == "off"
    assert "label_smoothing" in RecipePicker("medium").switches
    # The loss on MixUp's mixed masks: each mask's smoothed cross-entropy, by its weight (torch's for one mask).
    logits, first, second = torch.randn(2, 5, 4, 4), torch.randint(0, 5, (2, 4, 4)), torch.randint(0, 5, (2, 4, 4))
    ours = loss_for(smoothed)(logits, MixedMasks(first, second, 0.3))["cross_entropy"]
    torchs = 0.3 * F.cross_entropy(logits, first, label_smoothing=0.1) + 0.7 * F.cross_entropy(
        logits, second, label_smoothing=0.1)
    assert torch.allclose(ours, torchs, atol=1e-5), (ours, torchs)
    # It trains, with MixUp.
    result = segkit.train(segkit.run_spec(smoothed, "tiny", data, duration="2ba"), save_folder=runs,
                          print_progress=False)
    assert result.run.status == "finished" and result.run.info["plan"]["label_smoothing"] == 0.1
    # The run trained before the field existed: the same name, and it resumes where it stopped.
    spec = segkit.run_spec(recipes.from_dict(json.loads(older)), "tiny", data, duration="4ba")
    resumed = segkit.train(spec, save_folder=runs, print_progress=False)
    print(json.dumps({"name": spec.run_name, "resumed": resumed.resumed, "status": resumed.run.status,
                      "evaluations": len(resumed.run.history), "smoothed": result.run.name}))
''')


class StopAfterFirstEvaluation(Callback):
    def eval_after_all(self, state, logger):
        raise KeyboardInterrupt


def test_a_training_algorithm_is_a_lab_switch_in_two_files_and_older_runs_keep_their_names(tmp_path, scenes_root):
    older = dataclasses.replace(recipes.medium(), name="custom", mixup_alpha=0.3)
    spec = segkit.run_spec(older, "tiny", str(scenes_root), duration="4ba")
    with pytest.raises(KeyboardInterrupt):
        segkit.train(spec, save_folder=tmp_path / "runs", print_progress=False, callbacks=[StopAfterFirstEvaluation()])
    assert json.loads((tmp_path / "runs" / spec.run_name / "metrics.json").read_text())["status"] == "interrupted"

    copy = edited_copy(tmp_path, LABEL_SMOOTHING)  # recipes.py and losses.py
    done = subprocess.run([sys.executable, "-c", WITH_LABEL_SMOOTHING, str(copy), str(scenes_root),
                           str(tmp_path / "runs"), json.dumps(dataclasses.asdict(older))],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**subprocess_env(), "PYTHONPATH": str(copy)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    outcome = json.loads(done.stdout.splitlines()[-1])
    assert outcome == {"name": spec.run_name, "resumed": True, "status": "finished", "evaluations": 2,
                       "smoothed": outcome["smoothed"]}
    assert outcome["smoothed"].startswith("custom-") and outcome["smoothed"] != spec.run_name


#: BlurPool as a recipe switch, an algorithm that renames the network's weights: the field in recipes.py, the
#: surgery in model.py (a strided convolution blurs its input first: ``conv1.weight`` becomes ``conv1.conv.weight``).
BLUR_POOL = {
    "recipes.py": [
        ("""    mixup_alpha: float | None = None  # MixUp's Beta(alpha, alpha); None = no MixUp
""", """    mixup_alpha: float | None = None  # MixUp's Beta(alpha, alpha); None = no MixUp
    blur_pool: bool = False  # strided convolutions blur their input first (BlurPool)
"""),
        ("""    "mixup_alpha": FieldInfo("MixUp: alpha", "float", step=0.1),
""", """    "mixup_alpha": FieldInfo("MixUp: alpha", "float", step=0.1),
    "blur_pool": FieldInfo("BlurPool", "toggle"),
"""),
    ],
    "model.py": [
        ("SURGERIES: dict[str, Callable[[nn.Module], nn.Module]] = {}\n",
         """SURGERIES: dict[str, Callable[[nn.Module], nn.Module]] = {}


class Blurred(nn.Module):
    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("blur", (taps[:, None] * taps[None, :] / 16).expand(conv.in_channels, 1, 3, 3).clone())
        self.conv = conv

    def forward(self, x):
        return self.conv(nn.functional.conv2d(x, self.blur, padding=1, groups=x.shape[1]))


def blur_pool(module: nn.Module) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d) and child.stride != (1, 1):
            setattr(module, name, Blurred(child))
        else:
            blur_pool(child)
    return module


SURGERIES["blur_pool"] = blur_pool
"""),
    ],
}

WITH_BLUR_POOL = textwrap.dedent('''
    import dataclasses, json, sys
    import torch
    from composer import Callback
    import segkit
    from segkit import recipes

    copy, data, runs = sys.argv[1:4]
    assert segkit.__file__.startswith(copy), segkit.__file__


    class StopAfterFirstEvaluation(Callback):
        def eval_after_all(self, state, logger):
            raise KeyboardInterrupt


    spec = segkit.run_spec(dataclasses.replace(recipes.baseline(), name="custom", blur_pool=True), "tiny", data,
                           duration="4ba")
    try:
        segkit.train(spec, save_folder=runs, print_progress=False, callbacks=[StopAfterFirstEvaluation()])
    except KeyboardInterrupt:
        pass
    result = segkit.train(spec, save_folder=runs, print_progress=False)
    weights = torch.load(result.folder / "model.pt", weights_only=True)
    print(json.dumps({"resumed": result.resumed, "status": result.run.status, "evaluations": len(result.run.history),
                      "renamed": sorted(key for key in weights if key.endswith(".blur")),
                      "miou": result.miou, "evaluated": segkit.evaluate(result.folder)["miou"]}))
''')


def edited_copy(tmp_path: Path, edits: dict[str, list[tuple[str, str]]]) -> Path:
    """A copy of the package with ``edits`` made (each old text found exactly once), and only those files changed."""
    copy = tmp_path / "kit"
    shutil.copytree(REPO / "segkit", copy / "segkit", ignore=shutil.ignore_patterns("__pycache__"))
    for name, replacements in edits.items():
        path = copy / "segkit" / name
        text = path.read_text()
        for old, new in replacements:
            assert text.count(old) == 1, (name, old)
            text = text.replace(old, new)
        path.write_text(text)
    changed = [path.name for path in (copy / "segkit").rglob("*.py")
               if path.read_bytes() != (REPO / "segkit" / path.relative_to(copy / "segkit")).read_bytes()]
    assert sorted(changed) == sorted(edits)
    return copy


def test_an_algorithm_that_renames_weights_is_two_files_and_its_runs_resume_and_load(tmp_path, scenes_root):
    copy = edited_copy(tmp_path, BLUR_POOL)
    done = subprocess.run([sys.executable, "-c", WITH_BLUR_POOL, str(copy), str(scenes_root), str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**subprocess_env(), "PYTHONPATH": str(copy)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    outcome = json.loads(done.stdout.splitlines()[-1])
    assert outcome["resumed"] and outcome["status"] == "finished" and outcome["evaluations"] == 2
    # model.pt holds the surgered network (the stem's and each downsampling convolution's blur), and loads:
    assert "backbone.conv1.blur" in outcome["renamed"] and len(outcome["renamed"]) > 2, outcome["renamed"]
    assert outcome["evaluated"] == pytest.approx(outcome["miou"], abs=1e-3)


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

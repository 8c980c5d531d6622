"""Reliability: killed runs resume to the same result, and every bad input gets one clear line.

Kill tests SIGKILL real training processes (tests/training_driver.py) at three moments (mid-epoch,
during evaluation, halfway through a checkpoint write), restart them with the same command and
compare the final history with an uninterrupted run of the same seed. The default suite runs one
moment per recipe (all moments and all recipes are covered once) and a papermill notebook kill;
``pytest -m slow`` runs the full 4 x 3 matrix.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from composer import Callback
from PIL import Image

from segkit.engine import train
from segkit.errors import ConfigError, DataError, RunError, SegkitError, WeightsError
from segkit.recipes import RECIPES
from segkit.spec import run_spec
from tests.conftest import REPO, process_tree, run_segkit, skip_or_fail, subprocess_env, tiny_run_spec, train_options

DURATION = "3ep"  # tiny profile on the 8-image scenes fixture: 2 steps per epoch, evaluations at 2, 4, 6
TIMING = ("wall_time", "images_per_second")
MOMENTS = {"mid-epoch": ["batch", 3], "during evaluation": ["eval", 2], "during checkpoint write": ["checkpoint", 2]}
FAST = [("baseline", "mid-epoch"), ("mild", "during evaluation"), ("medium", "during checkpoint write"),
        ("hot", "mid-epoch")]
ALL = [(recipe, moment) for recipe in RECIPES for moment in MOMENTS]


def history(folder: Path) -> list[dict]:
    entries = json.loads((folder / "metrics.json").read_text())["history"]
    return [{k: v for k, v in entry.items() if k not in TIMING} for entry in entries]


def train_tiny(recipe: str, data: Path, save_folder: Path, run_name: str):
    return train(run_spec(recipe, "tiny", data, duration=DURATION), save_folder=save_folder, run_name=run_name,
                 print_progress=False)


def killed_run(recipe: str, moment: str, data: Path, save_folder: Path, run_name: str) -> int:
    options = {"recipe": recipe, "data": str(data), "save_folder": str(save_folder), "run_name": run_name,
               "duration": DURATION, "kill_at": MOMENTS[moment], "print_progress": False}
    process = subprocess.run([sys.executable, str(REPO / "tests" / "training_driver.py"), json.dumps(options)],
                             capture_output=True, text=True, timeout=300, env=subprocess_env())
    return process.returncode


def check_kill_and_resume(recipe, moment, scenes_root, tmp_path):
    train_tiny(recipe, scenes_root, tmp_path, "uninterrupted")
    assert killed_run(recipe, moment, scenes_root, tmp_path, "killed") == -9  # SIGKILL, no cleanup
    folder = tmp_path / "killed"
    done_before_kill = len(history(folder))
    assert 0 < done_before_kill < 3
    if moment == "during checkpoint write":
        assert list((folder / "checkpoints").glob(".latest.pt.*.tmp"))  # a torn temporary file was left
    resumed = train_tiny(recipe, scenes_root, tmp_path, "killed")  # the same command again
    assert resumed.resumed
    assert history(folder) == history(tmp_path / "uninterrupted")
    assert not list((folder / "checkpoints").glob(".*.tmp"))


@pytest.mark.parametrize("recipe,moment", FAST)
def test_kill_and_resume(recipe, moment, scenes_root, tmp_path):
    check_kill_and_resume(recipe, moment, scenes_root, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("recipe,moment", [case for case in ALL if case not in FAST])
def test_kill_and_resume_full_matrix(recipe, moment, scenes_root, tmp_path):
    check_kill_and_resume(recipe, moment, scenes_root, tmp_path)


# --- bad input: one line, the documented exception type, existing run folders untouched -------

@pytest.fixture
def existing_run(tmp_path, tiny_run) -> Path:
    """A finished run in the save folder that every bad command must leave byte-for-byte alone (a copy of
    the session's tiny run, so each case gets its own)."""
    return Path(shutil.copytree(tiny_run.folder, tmp_path / "runs" / "precious"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def broken_copy(scenes_root: Path, tmp_path: Path, damage) -> Path:
    root = shutil.copytree(scenes_root, tmp_path / "data")
    damage(root)
    return root


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def relabel(root: Path, value: int) -> None:
    path = root / "annotations" / "training" / "ADE_train_00000001.png"
    labels = np.array(Image.open(path))
    labels[0, 0] = value
    Image.fromarray(labels).save(path)


def resize_annotation(root: Path) -> None:
    path = root / "annotations" / "training" / "ADE_train_00000002.png"
    Image.fromarray(np.zeros((5, 7), dtype=np.uint8)).save(path)


#: PIL's decompression-bomb limit while ``test_bad_data`` runs, so that a "bomb" is a small file: PIL refuses
#: an image over twice the limit (the built-in scenes are at most 144x144 = 20,736 pixels).
PIXEL_LIMIT = 100_000


def enlarge_image(root: Path) -> None:
    path = root / "images" / "training" / "ADE_train_00000003.jpg"
    Image.open(path).resize((700, 700)).save(path)  # 490,000 pixels, over 2 x PIXEL_LIMIT


def negative_label(root: Path) -> None:
    """A 32-bit ("I") annotation holding -1: PNG cannot, a TIFF under the .png name (PIL reads by content) can."""
    path = root / "annotations" / "training" / "ADE_train_00000004.png"
    labels = np.array(Image.open(path)).astype(np.int32)
    labels[0, 0] = -1
    Image.fromarray(labels).save(path, format="TIFF")


def drop_class_list(root: Path, label: int) -> None:
    (root / "objectInfo150.txt").unlink()
    relabel(root, label)


DATA_CASES = {
    "root missing": (lambda root: shutil.rmtree(root), DataError, r"data root .* does not exist"),
    "root empty": (lambda root: [shutil.rmtree(p) for p in root.iterdir() if p.is_dir()], DataError,
                   r"not in the ADEChallengeData2016 layout: images/training/ is missing"),
    "wrong layout": (lambda root: (root / "images").rename(root / "pictures"), DataError,
                     r"images/training/ is missing"),
    "image without label": (lambda root: (root / "annotations/training/ADE_train_00000003.png").unlink(),
                            DataError, r"ADE_train_00000003.jpg has no annotation"),
    "label without image": (lambda root: (root / "images/training/ADE_train_00000003.jpg").unlink(),
                            DataError, r"annotation .*ADE_train_00000003.png has no image"),
    "corrupt jpeg": (lambda root: truncate(root / "images/training/ADE_train_00000004.jpg"), DataError,
                     r"cannot read image .*ADE_train_00000004.jpg .*replace or remove the file"),
    "corrupt png": (lambda root: truncate(root / "annotations/validation/ADE_val_00000002.png"), DataError,
                    r"cannot read annotation .*ADE_val_00000002.png"),
    "label beyond class count": (lambda root: relabel(root, 40), DataError,
                                 r"ADE_train_00000001.png holds label 40, but the dataset has 16 classes"),
    "size mismatch": (resize_annotation, DataError, r"ADE_train_00000002.jpg is \d+x\d+ but its annotation"),
    "image over the decompression-bomb limit": (
        enlarge_image, DataError, r"image .*ADE_train_00000003.jpg is over PIL's decompression-bomb limit "
                                  r"\(Image size \(490000 pixels\) exceeds limit of 200000 pixels\); shrink or "
                                  r"remove the file"),
    "negative label in a 32-bit annotation": (
        negative_label, DataError, r"annotation .*ADE_train_00000004.png holds label -1; labels are 0 \(unlabelled\) "
                                   r"to 16, never negative: fix the file"),
    "no class list, label beyond 150": (
        lambda root: drop_class_list(root, 200), DataError,
        r"ADE_train_00000001.png holds label 200, but the dataset has 150 classes \(labels 0..150\); the root has "
        r"no objectInfo150.txt, so ADE20k's 150 classes were assumed: add one listing this dataset's classes"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data(case, scenes_root, tmp_path, existing_run, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", PIXEL_LIMIT)
    damage, error_type, message = DATA_CASES[case]
    root = broken_copy(scenes_root, tmp_path, damage) if case != "root missing" else tmp_path / "nowhere"
    before = snapshot(existing_run)
    with pytest.raises(error_type, match=message) as raised:
        train(run_spec("baseline", "tiny", root, duration="4ba"), save_folder=existing_run.parent, print_progress=False)
    assert "\n" not in str(raised.value)
    assert snapshot(existing_run) == before


def test_grayscale_rgba_and_16bit_images_train(scenes_root, tmp_path):
    def convert(root):
        for index, mode in ((1, "L"), (2, "RGBA"), (3, "I;16")):
            jpg = root / "images" / "training" / f"ADE_train_0000000{index}.jpg"
            image = Image.open(jpg).convert("L" if mode == "I;16" else mode)
            if mode == "I;16":
                image = Image.fromarray(np.array(image).astype(np.uint16) * 257)
            if mode != "L":
                jpg.unlink()
                jpg = jpg.with_suffix(".png")
            image.save(jpg)

    result = train(run_spec("baseline", "tiny", broken_copy(scenes_root, tmp_path, convert), duration="2ba"),
                   save_folder=tmp_path / "runs", print_progress=False)
    assert result.run.status == "finished"


CONFIG_CASES = {
    "unknown recipe": ({"recipe": "spicy"}, ConfigError, r"unknown recipe 'spicy'; choose one of baseline"),
    "unknown profile": ({"profile": "tpu"}, ConfigError,
                        r"unknown profile 'tpu'; choose one of a100, gpu, cpu, scratch, tiny"),
    "bad seed": ({"seed": "seven"}, ConfigError, r"seed must be an integer"),
    "bad duration": ({"duration": "0ba"}, ConfigError, r"duration '0ba' must be a positive number"),
    "bad run name": ({"run_name": "a b"}, ConfigError, r"run name 'a b' must be"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_arguments(case, scenes_root, existing_run):
    kwargs, error_type, message = CONFIG_CASES[case]
    before = snapshot(existing_run)
    with pytest.raises(error_type, match=message):
        spec, options = train_options({"recipe": "baseline", "data": scenes_root, "profile": "tiny",
                                       "run_name": "precious", "save_folder": existing_run.parent, **kwargs})
        train(run_spec(**spec), **options)
    assert snapshot(existing_run) == before


def test_unknown_backbone_in_a_custom_profile(scenes_root, existing_run):
    import dataclasses

    from segkit.profiles import get_profile

    profile = dataclasses.replace(get_profile("tiny"), backbone="resnet9")
    before = snapshot(existing_run)
    with pytest.raises(ConfigError, match=r"unknown backbone 'resnet9'; choose one of resnet10"):
        train(run_spec("baseline", profile, scenes_root), save_folder=existing_run.parent, run_name="precious")
    assert snapshot(existing_run) == before


@pytest.mark.parametrize("text,message", [
    (b"epochs: 3\nsam_rho: -1\n", r"field 'sam_rho' must be a number in \(0, 10\]"),
    (b"epochs: 3\nlr: fast\n", r"field 'lr' must be a number in \(0, 10\]"),
    (b"epochs: 3\nwarmup: 2ep\n", r"unknown field 'warmup'"),
    ("epochs: 3\n# caf\u00e9\n".encode("latin-1"), r"recipe.yaml is not UTF-8 text \(byte 0xe9 at offset 15\); "
                                                      r"save it as UTF-8"),
])
def test_bad_recipe_file_from_the_cli(text, message, tmp_path, existing_run):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(text)
    before = snapshot(existing_run)
    done = run_segkit("train", "--profile", "tiny", "--recipe", str(path), "--save-folder", str(existing_run.parent))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("segkit: error: recipe file ")
    assert re.search(message, done.stderr), done.stderr
    assert snapshot(existing_run) == before


@pytest.mark.parametrize("args,message", [
    (["--data", "/nonexistent/ade"], r"segkit: error: data root /nonexistent/ade does not exist"),
    (["--profile", "laptop"], r"segkit: error: unknown profile 'laptop'"),
    (["--seed", "x"], r"segkit train: error: argument --seed: invalid int value: 'x'"),
    (["--gpus", "-1"], r"segkit: error: gpus must be at least 1, got -1"),
    (["--duration", "soon"], r"segkit: error: duration 'soon' must be a positive number"),
])
def test_cli_errors_are_one_line(args, message, existing_run):
    before = snapshot(existing_run)
    done = run_segkit("train", "--profile", "tiny", *args, "--save-folder", str(existing_run.parent))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and re.match(message, done.stderr), done.stderr
    assert snapshot(existing_run) == before


def test_corrupt_image_found_during_training_from_the_cli(scenes_root, tmp_path):
    root = broken_copy(scenes_root, tmp_path, lambda r: truncate(r / "images/training/ADE_train_00000005.jpg"))
    done = run_segkit("train", "--profile", "tiny", "--data", str(root), "--save-folder", str(tmp_path / "runs"),
                      "--run-name", "broken")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "cannot read image" in done.stderr and "ADE_train_00000005.jpg" in done.stderr
    metrics = json.loads((tmp_path / "runs" / "broken" / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "ADE_train_00000005.jpg" in metrics["error"]


def test_unwritable_save_folder(scenes_root, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(RunError, match=r"cannot write run folder .*a-file/r .*; pass a writable --save-folder"):
        train(run_spec("baseline", "tiny", scenes_root), save_folder=blocker, run_name="r")


def test_another_process_training_the_same_run_is_refused(scenes_root, existing_run):
    from segkit.runs import RunLock

    before = snapshot(existing_run)
    with RunLock(existing_run), pytest.raises(RunError, match=r"is being trained by another process"):
        train(run_spec("baseline", "tiny", scenes_root, duration="2ba"), save_folder=existing_run.parent,
              run_name="precious")
    assert snapshot(existing_run) == before


class PoisonWeights(Callback):
    """Set one weight to NaN before step ``step``, as a diverging run would."""

    def __init__(self, step: int):
        self.step = step

    def batch_start(self, state, logger):
        if int(state.timestamp.batch) + 1 == self.step:
            with torch.no_grad():
                next(state.model.parameters()).fill_(float("nan"))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(scenes_root, tmp_path):
    with pytest.raises(RunError, match=r"the training loss became nan at step 3 \(epoch 2\); the last good "
                                       r"checkpoint is kept in .*latest.pt; lower the learning rate"):
        train(run_spec("baseline", "tiny", scenes_root, duration=DURATION), save_folder=tmp_path, run_name="nan",
              callbacks=[PoisonWeights(3)], print_progress=False)
    from segkit.checkpoints import safe_load

    checkpoint = safe_load(tmp_path / "nan" / "checkpoints" / "latest.pt")
    assert int(checkpoint["state"]["timestamp"]["Timestamp"]["batch"]) == 2  # saved before the bad step
    assert all(torch.isfinite(v).all() for v in checkpoint["state"]["model"].values() if v.is_floating_point())
    metrics = json.loads((tmp_path / "nan" / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "nan at step 3" in metrics["error"]
    assert [entry["step"] for entry in metrics["history"]] == [2]


def test_full_disk_while_saving_keeps_the_previous_checkpoint(scenes_root, tmp_path):
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        skip_or_fail("needs unshare to mount a small private tmpfs (a real full disk)")
    first = train(run_spec("baseline", "tiny", scenes_root, duration="2ba"), save_folder=tmp_path / "probe",
                  run_name="r", print_progress=False)
    checkpoint_size = (first.folder / "checkpoints" / "latest.pt").stat().st_size
    # Room for one checkpoint and the small files, not for the temporary copy of a second one.
    size_kb = int(checkpoint_size * 1.6) // 1024
    save_folder = tmp_path / "small-disk"
    save_folder.mkdir()
    script = (f"mount -t tmpfs -o size={size_kb}k tmpfs {save_folder} && "
              f"{sys.executable} -m segkit train --profile tiny --data {scenes_root} --duration 2ep "
              f"--save-folder {save_folder} --run-name r; "
              f"echo EXIT $?; cp -r {save_folder}/r {tmp_path}/after")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                          env=subprocess_env())
    assert "EXIT 2" in done.stdout, done.stderr
    error_lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(error_lines) == 1
    assert error_lines[0].startswith("segkit: error: could not write ") and "the disk is full" in error_lines[0]
    assert "the previous version of the file is intact" in error_lines[0]
    kept = tmp_path / "after"
    from segkit.checkpoints import safe_load

    checkpoint = safe_load(kept / "checkpoints" / "latest.pt")  # loads: the first checkpoint is intact
    assert int(checkpoint["state"]["timestamp"]["Timestamp"]["batch"]) == 2
    assert not list((kept / "checkpoints").glob(".*.tmp"))  # the torn temporary file was removed


def unfinished(folder: Path) -> Path:
    """Make a finished run look killed before its end (no model.pt): its next start loads the checkpoint."""
    (folder / "model.pt").unlink()
    return folder


def test_checkpoint_from_another_model_is_refused(scenes_root, ade_root, tmp_path):
    ours = train(run_spec("baseline", "tiny", scenes_root, duration="2ba"), save_folder=tmp_path, run_name="ours",
                 print_progress=False)
    other = train(run_spec("baseline", "tiny", ade_root, duration="1ba"), save_folder=tmp_path, run_name="other",
                  print_progress=False)  # ADE20k-format data with 150 classes: another classifier
    target = unfinished(ours.folder) / "checkpoints" / "latest.pt"
    shutil.copy(other.folder / "checkpoints" / "latest.pt", target)
    before = snapshot(ours.folder)
    with pytest.raises(WeightsError, match=r"latest.pt is from another model \(module.head.classifier.1.weight "
                                           r"has shape \(150, 16, 1, 1\), the model needs \(16, 16, 1, 1\)\)"):
        train(run_spec("baseline", "tiny", scenes_root, duration="2ba"), save_folder=tmp_path, run_name="ours")
    assert snapshot(ours.folder) == before


def test_truncated_checkpoint_is_refused_and_kept(scenes_root, tmp_path):
    result = train(run_spec("baseline", "tiny", scenes_root, duration="2ba"), save_folder=tmp_path,
                   print_progress=False)
    truncate(unfinished(result.folder) / "checkpoints" / "latest.pt")
    before = snapshot(result.folder)
    with pytest.raises(WeightsError, match=r"latest.pt is truncated or not a PyTorch file .*restore it or "
                                           r"delete it to start over"):
        train(run_spec("baseline", "tiny", scenes_root, duration="2ba"), save_folder=tmp_path)
    assert snapshot(result.folder) == before


class Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_code_is_not_executed(scenes_root, tmp_path):
    result = train(run_spec("baseline", "tiny", scenes_root, duration="2ba"), save_folder=tmp_path,
                   print_progress=False)
    path = unfinished(result.folder) / "checkpoints" / "latest.pt"
    checkpoint = torch.load(path, weights_only=False)
    marker = tmp_path / "pwned"
    checkpoint["state"]["run_name"] = Payload(marker)
    torch.save(checkpoint, path)
    with pytest.raises(WeightsError, match=r"holds objects that loading would have to execute"):
        train(run_spec("baseline", "tiny", scenes_root, duration="2ba"), save_folder=tmp_path)
    assert not marker.exists()


def test_checkpoint_swapped_between_check_and_load_is_never_unpickled(scenes_root, tmp_path, monkeypatch):
    """Whoever can write the run folder replaces latest.pt, after segkit checked it and before Composer loads a
    checkpoint, with a pickle that runs a command: the code never runs, and the run resumes from the bytes
    that were checked (it ends with the uninterrupted run's history)."""
    import segkit.engine

    train_tiny("baseline", scenes_root, tmp_path, "uninterrupted")
    assert killed_run("baseline", "mid-epoch", scenes_root, tmp_path, "killed") == -9
    path = tmp_path / "killed" / "checkpoints" / "latest.pt"
    marker = tmp_path / "pwned"
    swapped = torch.load(path, weights_only=False)
    swapped["state"]["run_name"] = Payload(marker)
    build_trainer = segkit.engine.Trainer

    def swap_then_build(*args, **kwargs):  # the check is done; Composer opens its checkpoint in here
        torch.save(swapped, path)
        return build_trainer(*args, **kwargs)

    monkeypatch.setattr(segkit.engine, "Trainer", swap_then_build)
    resumed = train_tiny("baseline", scenes_root, tmp_path, "killed")
    assert not marker.exists()
    assert resumed.resumed and history(tmp_path / "killed") == history(tmp_path / "uninterrupted")
    torch.save(swapped, tmp_path / "swapped.pt")
    torch.load(tmp_path / "swapped.pt", weights_only=False)  # the payload is live: unchecked, it runs
    assert marker.exists()


def test_truncated_pretrained_weights_are_one_line_and_kept(scenes_root, tmp_path, existing_run):
    """A cut-short ``.pth``: the cached scenes-pretrained backbone (read with its provenance) and a local file."""
    from segkit.model import BACKBONES
    from segkit.pretraining import read_provenance, weights_sha256

    state = BACKBONES["resnet10"]().state_dict()
    path = tmp_path / "pretrained" / "resnet10-scenes-0123abcd.pth"
    path.parent.mkdir()
    torch.save(state, path)
    path.with_suffix(".json").write_text(json.dumps({"sha256": weights_sha256(state)}))
    read_provenance(path)  # whole, it is accepted
    truncate(path)
    before, run_before = snapshot(path.parent), snapshot(existing_run)
    with pytest.raises(WeightsError, match=r"pretrained weights .*resnet10-scenes-0123abcd.pth are truncated or not "
                                           r"a PyTorch file \(.*\); delete .* to make them again") as raised:
        read_provenance(path)
    assert "\n" not in str(raised.value)
    with pytest.raises(WeightsError, match=r"weights file .*resnet10-scenes-0123abcd.pth is truncated or not a "
                                           r"PyTorch file \(.*\); pass a torchvision ResNet .pth file") as raised:
        train(run_spec("baseline", "tiny", scenes_root, duration="2ba", weights=str(path)),
              save_folder=existing_run.parent, print_progress=False)
    assert "\n" not in str(raised.value)
    assert snapshot(path.parent) == before and snapshot(existing_run) == run_before


def test_a_file_system_without_locks_is_one_line(scenes_root, existing_run, monkeypatch):
    """flock fails with ENOLCK (an NFS mount without its lock daemon): one line, and SEGKIT_NO_RUN_LOCK=1 trains."""
    import errno

    from segkit import runs

    def no_locks(file, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(runs.fcntl, "flock", no_locks)
    before = snapshot(existing_run)
    with pytest.raises(RunError, match=r"cannot lock run folder .*precious: its file system does not support locks "
                                       r"\(No locks available\); put --save-folder on a local disk, or set "
                                       r"SEGKIT_NO_RUN_LOCK=1") as raised:
        train(run_spec("baseline", "tiny", scenes_root, duration="2ba"), save_folder=existing_run.parent,
              run_name="precious")
    assert "\n" not in str(raised.value)
    assert snapshot(existing_run) == before
    monkeypatch.setenv("SEGKIT_NO_RUN_LOCK", "1")
    result = train(run_spec("baseline", "tiny", scenes_root, duration="2ba"), save_folder=existing_run.parent,
                   run_name="unlocked", print_progress=False)
    assert result.run.status == "finished"


def test_a_corrupt_metrics_file_says_how_to_recover(scenes_root, existing_run):
    metrics = existing_run / "metrics.json"
    recorded = json.loads(metrics.read_text())["history"]
    metrics.write_bytes(metrics.read_bytes()[:50])
    before = snapshot(existing_run)
    spec = tiny_run_spec(scenes_root)  # the run existing_run is a copy of
    command = {"save_folder": existing_run.parent, "run_name": "precious", "print_progress": False}
    with pytest.raises(RunError, match=r"precious/metrics.json is not valid JSON \(.*\); delete it and run the same "
                                       r"training command again: it is rebuilt from checkpoints/latest.pt") as raised:
        train(spec, **command)
    assert "\n" not in str(raised.value)
    assert snapshot(existing_run) == before
    metrics.unlink()  # what the message says to do
    assert train(spec, **command).run.status == "finished"
    assert json.loads(metrics.read_text())["history"] == recorded


def test_a_root_without_a_class_list_is_named_as_ade20k_in_one_line(ade_root, tmp_path, capsys):
    train(run_spec("baseline", "tiny", ade_root, duration="1ba"), save_folder=tmp_path)
    notes = [line for line in capsys.readouterr().out.splitlines() if "objectInfo150.txt" in line]
    assert notes == [f"{ade_root} has no objectInfo150.txt: its labels 1..150 are taken as ADE20k's 150 classes "
                     f"(wall, building, ..., flag); add one if it is another dataset"]


def test_checking_the_data_finds_a_bad_validation_file_before_anything_is_written(scenes_root, tmp_path):
    """Unchecked, a bad validation file fails the run at its first evaluation (an epoch in); checked, before the
    run folder exists."""
    root = broken_copy(scenes_root, tmp_path, lambda r: truncate(r / "annotations/validation/ADE_val_00000003.png"))
    spec = run_spec("baseline", "tiny", root, duration="4ba")
    with pytest.raises(DataError, match=r"cannot read annotation .*ADE_val_00000003.png") as raised:
        train(spec, save_folder=tmp_path / "checked", check_data=True, print_progress=False)
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "checked").exists()
    with pytest.raises(DataError, match=r"cannot read annotation .*ADE_val_00000003.png"):
        # tiny runs on the CPU: unchecked by default
        train(spec, save_folder=tmp_path / "unchecked", print_progress=False)
    unchecked = json.loads((tmp_path / "unchecked" / "baseline-tiny-seed17-4ba" / "metrics.json").read_text())
    assert unchecked["status"] == "failed" and unchecked["history"] == []  # it trained, then failed evaluating


def test_a_checked_run_is_the_same_run(scenes_root, tmp_path):
    for name, check in (("checked", True), ("unchecked", False)):
        train(run_spec("mild", "tiny", scenes_root, duration="4ba"), save_folder=tmp_path, run_name=name,
              check_data=check, print_progress=False)
    assert history(tmp_path / "checked") == history(tmp_path / "unchecked")


def test_errors_are_one_type(scenes_root):
    for error in (ConfigError, DataError, RunError, WeightsError):
        assert issubclass(error, SegkitError) and issubclass(error, ValueError)


KILL_AFTER_FIRST_EVALUATION = """
import os, signal
import segkit.engine

_recorded = segkit.engine.RunRecorder.eval_after_all


def eval_after_all(self, state, logger):  # the first evaluation is recorded, then everything dies
    _recorded(self, state, logger)
    os.kill(os.getppid(), signal.SIGKILL)  # papermill, which started this kernel in a group of its own
    os.killpg(os.getpgid(0), signal.SIGKILL)


segkit.engine.RunRecorder.eval_after_all = eval_after_all
"""


def test_killed_notebook_resumes_when_run_again(scenes_root, tmp_path, monkeypatch):
    """``papermill`` and its kernel SIGKILLed right after the run's first evaluation (an event, not a clock:
    a ``sitecustomize`` loaded by the kernel kills papermill and itself); the same command again resumes."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    save_folder = tmp_path / "runs"
    command = [sys.executable, "-m", "papermill", "--engine", "segkit", str(REPO / "notebooks" / "03_hot.ipynb"),
               str(tmp_path / "out.ipynb"),
               "-p", "profile", "tiny", "-p", "data_root", str(scenes_root), "-p", "duration", DURATION,
               "-p", "run_name", "killed", "-p", "save_folder", str(save_folder), "--no-progress-bar"]
    killer = tmp_path / "killer"
    killer.mkdir()
    (killer / "sitecustomize.py").write_text(KILL_AFTER_FIRST_EVALUATION)
    env = {**subprocess_env(), "PYTHONPATH": os.pathsep.join([str(killer), os.environ["PYTHONPATH"]])}
    job = subprocess.run(command, capture_output=True, env=env, timeout=300,
                         start_new_session=True)  # its own process group: papermill and its kernel
    assert job.returncode == -9
    metrics = save_folder / "killed" / "metrics.json"
    before_kill = json.loads(metrics.read_text())["history"]
    assert len(before_kill) == 1  # killed right after the first evaluation and its checkpoint
    rerun = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    train_tiny("hot", scenes_root, tmp_path / "reference", "uninterrupted")
    after_rerun = json.loads(metrics.read_text())["history"]
    assert after_rerun[:len(before_kill)] == before_kill  # resumed: the evaluations done before the kill are kept
    assert history(save_folder / "killed") == history(tmp_path / "reference" / "uninterrupted")


# --- resuming where the step count matters ----------------------------------------------------

@pytest.fixture(scope="module")
def odd_scenes(tmp_path_factory) -> Path:
    """12 training images: 3 steps per epoch on the tiny profile, so a checkpoint falls on an odd step."""
    from segkit.scenes import write_scenes

    return write_scenes(tmp_path_factory.mktemp("odd-scenes"), train_images=12, val_images=4)


def test_medium_resumes_on_an_odd_step_with_sams_phase(odd_scenes, tmp_path):
    """SAM runs every second step: resumed after step 3, step 4 must be a SAM step again. A step counter
    that restarted at zero would make it a plain step, and the history would differ."""
    train(run_spec("medium", "tiny", odd_scenes, duration="3ep"), save_folder=tmp_path, run_name="uninterrupted",
          print_progress=False)
    options = {"recipe": "medium", "data": str(odd_scenes), "save_folder": str(tmp_path), "run_name": "killed",
               "duration": "3ep", "kill_at": ["batch", 4], "print_progress": False}
    killed = subprocess.run([sys.executable, str(REPO / "tests" / "training_driver.py"), json.dumps(options)],
                            capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert killed.returncode == -9
    assert [entry["step"] for entry in history(tmp_path / "killed")] == [3]  # the checkpoint is at step 3

    class StepIndex(Callback):
        seen: list = []

        def batch_start(self, state, logger):  # after SAM set it for this batch (algorithms run first)
            self.seen.append((state.optimizers[0].step_index, int(state.timestamp.batch)))

    spy = StepIndex()
    with warnings.catch_warnings():  # Composer notes that the spy (a new callback) has no saved state
        warnings.filterwarnings("ignore", message=".*StepIndex is not in the state_dict")
        resumed = train(run_spec("medium", "tiny", odd_scenes, duration="3ep"), save_folder=tmp_path,
                        run_name="killed", print_progress=False, callbacks=[spy])
    assert resumed.resumed and spy.seen[0] == (3, 3) and all(index == batch for index, batch in spy.seen)
    assert history(tmp_path / "killed") == history(tmp_path / "uninterrupted")


def test_killed_after_the_last_checkpoint_before_model_pt(scenes_root, tmp_path):
    """Training finished and checkpointed, then the process died before writing model.pt: the same command
    writes model.pt without training again, and it holds the uninterrupted run's weights."""
    reference = train_tiny("mild", scenes_root, tmp_path, "uninterrupted")
    options = {"recipe": "mild", "data": str(scenes_root), "save_folder": str(tmp_path), "run_name": "killed",
               "duration": DURATION, "kill_at": ["before weights", 1], "print_progress": False}
    killed = subprocess.run([sys.executable, str(REPO / "tests" / "training_driver.py"), json.dumps(options)],
                            capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert killed.returncode == -9 and not (tmp_path / "killed" / "model.pt").exists()
    assert len(history(tmp_path / "killed")) == 3  # every evaluation was done and checkpointed
    again = train_tiny("mild", scenes_root, tmp_path, "killed")
    assert history(tmp_path / "killed") == history(reference.folder)
    ours, theirs = (torch.load(folder / "model.pt", weights_only=True) for folder in (again.folder, reference.folder))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


#: A tiny run with two loader workers (the a100 profile's loader, small): a script, so a worker can be stopped.
STALL_SCRIPT = """
import dataclasses, sys
from segkit.engine import train
from segkit.spec import run_spec
from segkit.profiles import get_profile
if __name__ == "__main__":
    profile = dataclasses.replace(get_profile("tiny"), num_workers=2)
    train(run_spec("baseline", profile, sys.argv[1], duration="20ba"), save_folder=sys.argv[2], run_name="stall")
"""


def test_a_stopped_loader_worker_fails_the_run_in_one_line_that_names_it_and_the_run_resumes(tmp_path, scenes_root):
    """SIGSTOP one of a run's two loader workers mid-run: the run stops after the loader's bound (5 s here,
    600 s by default) with one line naming the worker, metrics.json says failed, and the same command resumes."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs Linux's /proc")
    script = tmp_path / "stall.py"
    script.write_text(STALL_SCRIPT)
    env = {**subprocess_env(), "PYTHONPATH": str(REPO), "SEGKIT_LOADER_TIMEOUT": "5"}
    command = [sys.executable, str(script), str(scenes_root), str(tmp_path / "runs")]
    metrics = tmp_path / "runs" / "stall" / "metrics.json"
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stopped = None
    try:
        deadline = time.monotonic() + 240
        while stopped is None and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.5)
            if metrics.exists() and json.loads(metrics.read_text()).get("history"):
                tree = process_tree(run.pid)
                workers = [pid for pid, parent in tree.items() if parent in tree]  # the fork server's children
                if workers:
                    stopped = workers[0]
                    os.kill(stopped, signal.SIGSTOP)
                    stopped_at = time.monotonic()
        assert stopped is not None, "the run ended before a worker could be stopped"
        _, stderr = run.communicate(timeout=120)
        waited = time.monotonic() - stopped_at
    finally:
        if stopped is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped, signal.SIGKILL)
                os.kill(stopped, signal.SIGCONT)
        if run.poll() is None:
            run.kill()
    assert run.returncode != 0
    line = stderr.strip().splitlines()[-1]
    assert f"the data loader waited 5 s for a batch from worker process {stopped} (stopped)" in line, stderr[-2000:]
    assert waited < 60, waited
    info = json.loads(metrics.read_text())
    assert info["status"] == "failed" and info["error"].startswith("the data loader waited 5 s")
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = json.loads(metrics.read_text())
    assert resumed["status"] == "finished" and resumed["history"][-1]["step"] == 20

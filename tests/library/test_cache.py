"""The data cache shared by a room of learners who are separate Unix accounts (``segkit.cache``).

The accounts are real (``tests.accounts``): an instructor and two learners, each with a home, the
learners in one group. What one account writes must be readable by the next, a learner who cannot
write the cache must still train, and no learner can change what another reads.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
import torch

from segkit import cache, pretraining, scenes
from segkit.errors import DataError
from tests.accounts import unix_accounts
from tests.conftest import REPO, run_segkit

#: A set small enough for a test (the tiny profile's is 16 + 8).
SMALL = {"train_images": 4, "val_images": 2}
#: Opens the built-in set of SMALL's size as the loader does and reads every pair; prints its folder.
READ_EVERY_PAIR = """
from segkit.data import open_dataset
from segkit.scenes import builtin_scenes
root = builtin_scenes(train_images={train_images}, val_images={val_images})
for split in ("training", "validation"):
    dataset = open_dataset(root, split)
    assert all(dataset[i][1].numel() > 0 for i in range(len(dataset)))
print(root)
""".format(**SMALL)


@pytest.fixture(scope="module")
def room():
    """An instructor and two learners (``ada`` and ``grace``), the learners in one group."""
    with unix_accounts(("instructor", "ada", "grace")) as (accounts, group):
        yield accounts, group


def shared_folder(owner, group: int, mode: int) -> Path:
    """A cache folder as an instructor sets one up (``/srv/segkit-data`` on a hub)."""
    folder = Path(tempfile.mkdtemp(prefix="srv-segkit-data-", dir=owner.home.parent))
    os.chown(folder, owner.uid, group)
    folder.chmod(mode)
    return folder


def modes(root: Path) -> set[int]:
    return {stat.S_IMODE(path.stat().st_mode) for path in [root, *root.rglob("*")]}


def test_what_one_learner_writes_into_a_group_cache_the_next_reads_and_cannot_change(room):
    accounts, group = room
    ada, grace = accounts["ada"], accounts["grace"]
    # Group-writable, setgid (the group stays on what is made) and sticky (no one renames another's entry).
    folder = shared_folder(accounts["instructor"], group, 0o3775)
    made = ada.python(READ_EVERY_PAIR, SEGKIT_DATA=str(folder))
    assert made.returncode == 0, made.stderr
    entry = Path(made.stdout.strip())
    assert entry.parent == folder and entry.name == scenes.entry_name(**SMALL)
    assert entry.stat().st_uid == ada.uid and {path.stat().st_gid for path in entry.rglob("*")} == {group}
    assert not [mode for mode in modes(entry) if mode & (stat.S_IWGRP | stat.S_IWOTH)], modes(entry)

    read = grace.python(READ_EVERY_PAIR, SEGKIT_DATA=str(folder))
    assert read.returncode == 0 and read.stdout.strip() == str(entry) and read.stderr == "", read.stderr
    annotation = next(entry.glob("annotations/training/*.png"))
    tamper = grace.python(f"open({str(annotation)!r}, 'wb').write(b'')")
    assert "PermissionError" in tamper.stderr
    rename = grace.python(f"import os; os.rename({str(entry)!r}, {str(entry) + '-moved'!r})")
    assert "PermissionError" in rename.stderr and entry.is_dir()


def test_a_learner_who_cannot_write_the_prefilled_cache_trains_from_it_and_keeps_their_own_sets(room):
    accounts, group = room
    instructor, ada = accounts["instructor"], accounts["ada"]
    folder = shared_folder(instructor, group, 0o755)
    prefill = instructor.run(os.sys.executable, "-m", "segkit", "data", "prefill", "--profile", "tiny", "--shared",
                             SEGKIT_DATA=str(folder), PYTHONPATH=str(REPO))
    assert prefill.returncode == 0, prefill.stderr
    assert "read-only to others (folders 0755, files 0444)" in prefill.stdout
    prefilled = folder / scenes.entry_name(16, 8)
    assert modes(prefilled) == {0o555, 0o444} and stat.S_IMODE((folder / cache.MANIFEST).stat().st_mode) == 0o444

    # The learner's run reads the prefilled scenes, unchanged, and writes only into their own home.
    before = cache.tree_sha256(prefilled)
    train = ada.run(os.sys.executable, "-m", "segkit", "train", "--profile", "tiny", "--duration", "2ba",
                    SEGKIT_DATA=str(folder), PYTHONPATH=str(REPO))
    assert train.returncode == 0, train.stderr
    assert "read-only" not in train.stderr and (ada.home / "runs" / "baseline-tiny-seed17-2ba").is_dir()
    assert cache.tree_sha256(prefilled) == before

    # A set the instructor did not prefill goes to the learner's own cache, with one line saying so.
    own = ada.python(READ_EVERY_PAIR, SEGKIT_DATA=str(folder))
    assert own.returncode == 0, own.stderr
    assert Path(own.stdout.strip()) == ada.home / ".cache" / "segkit" / scenes.entry_name(**SMALL)
    lines = own.stderr.strip().splitlines()
    assert lines == [f"segkit: {folder} is read-only for {ada.name}: {scenes.entry_name(**SMALL)} goes to your own "
                     f"cache, {ada.home / '.cache' / 'segkit'}"], lines

    # The learner can change nothing of it: not a file, not the manifest.
    for path in (next(prefilled.glob("annotations/training/*.png")), folder / cache.MANIFEST):
        attempt = ada.python(f"open({str(path)!r}, 'ab').write(b'x')")
        assert "PermissionError" in attempt.stderr, path
        attempt = ada.python(f"import os; os.remove({str(path)!r})")
        assert "PermissionError" in attempt.stderr, path


def test_an_entry_another_account_left_unreadable_is_made_again_in_the_learner_s_own_cache(room):
    accounts, group = room
    ada, grace = accounts["ada"], accounts["grace"]
    folder = shared_folder(accounts["instructor"], group, 0o3775)
    # As earlier segkit versions left one: mkdtemp's drwx------ renamed into the cache.
    entry = folder / scenes.entry_name(**SMALL)
    made = ada.python(f"from segkit.scenes import write_scenes; write_scenes({str(entry)!r}, train_images=4, "
                      f"val_images=2); import os; os.chmod({str(entry)!r}, 0o700)")
    assert made.returncode == 0, made.stderr
    read = grace.python(READ_EVERY_PAIR, SEGKIT_DATA=str(folder))
    assert read.returncode == 0, read.stderr
    assert Path(read.stdout.strip()) == grace.home / ".cache" / "segkit" / scenes.entry_name(**SMALL)
    [line] = read.stderr.strip().splitlines()
    assert line.startswith(f"segkit: {entry} is not readable by {grace.name} (mode drwx------)")
    assert "chmod -R a+rX" in line


@pytest.fixture
def prefilled_cache(tmp_path, monkeypatch):
    """A cache holding a small set and small pretrained weights, prefilled (hashes recorded), as the
    instructor leaves it; its entries' names."""
    monkeypatch.setenv("SEGKIT_DATA", str(tmp_path / "cache"))
    small = {"images": 32, "epochs": 1, "image_size": 32}
    weights = pretraining.pretrained_backbone("resnet10", settings=small, log=lambda line: None)
    names = [scenes.entry_name(**SMALL), str(weights.relative_to(cache.cache_folder())),
             str(weights.with_suffix(".json").relative_to(cache.cache_folder()))]
    scenes.builtin_scenes(**SMALL)
    cache.prefill(names, shared=False, log=lambda line: None)
    return small, weights


def test_a_replaced_pretrained_backbone_is_refused_with_one_line(prefilled_cache):
    """Where learners share one uid (Zero to JupyterHub) or a cache's modes were loosened, a learner
    can replace the weights and make their provenance match; the instructor's manifest still tells."""
    small, weights = prefilled_cache
    replacement = pretraining.pretrain(pretraining.PretrainingSettings(**small, seed=1), weights.parent / "other.pth",
                                       log=lambda line: None)
    os.replace(replacement, weights)
    os.replace(replacement.with_suffix(".json"), weights.with_suffix(".json"))
    pretraining.read_provenance(weights)  # consistent with its own provenance: only the manifest knows
    with pytest.raises(DataError) as refused:
        pretraining.pretrained_backbone("resnet10", settings=small)
    message = str(refused.value)
    assert "\n" not in message and str(weights) in message and cache.MANIFEST in message
    assert "prefill --shared" in message


def test_a_changed_scene_set_is_refused_and_an_untouched_one_is_used(prefilled_cache):
    root = cache.cache_folder() / scenes.entry_name(**SMALL)
    assert scenes.builtin_scenes(**SMALL) == root
    annotation = next(root.glob("annotations/validation/*.png"))
    annotation.write_bytes(annotation.read_bytes()[:-1] + b"\0")
    with pytest.raises(DataError, match="was changed after the instructor prefilled"):
        scenes.builtin_scenes(**SMALL)


def test_cache_entries_take_the_folder_s_read_bits_and_never_write_bits(tmp_path, monkeypatch):
    for folder_mode, expected in ((0o700, {0o700, 0o600}), (0o750, {0o750, 0o640}), (0o777, {0o755, 0o644})):
        folder = tmp_path / f"cache-{folder_mode:o}"
        folder.mkdir()
        folder.chmod(folder_mode)
        monkeypatch.setenv("SEGKIT_DATA", str(folder))
        assert modes(scenes.builtin_scenes(**SMALL)) == expected, folder_mode


def test_a_corrupt_manifest_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGKIT_DATA", str(tmp_path))
    scenes.builtin_scenes(**SMALL)
    (tmp_path / cache.MANIFEST).write_text("{not json")
    with pytest.raises(DataError, match=r"segkit-manifest.json is not a readable segkit manifest; ask the instructor"):
        scenes.builtin_scenes(**SMALL)


def test_pretrained_weights_load_after_the_cache_moved_them(prefilled_cache):
    _, weights = prefilled_cache
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert "conv1.weight" in state and pretraining.read_provenance(weights)["sha256"]


def test_prefill_puts_every_entry_in_the_shared_cache_even_beside_the_account_s_own_copies(tmp_path, monkeypatch):
    """The instructor's own ~/.cache/segkit already holds the sets: prefill still makes them in the shared cache
    (a writable cache gets the entry; a private copy is only for who cannot write it)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SEGKIT_DATA", str(cache.private_folder()))
    own = scenes.builtin_scenes(16, 8)  # the tiny profile's set, in the account's own cache
    shared = tmp_path / "srv"
    monkeypatch.setenv("SEGKIT_DATA", str(shared))
    assert scenes.builtin_scenes(**SMALL).parent == shared
    done = run_segkit("data", "prefill", "--profile", "tiny", "--shared")
    assert done.returncode == 0, done.stderr
    assert (shared / own.name).is_dir() and own.name in cache.read_manifest(shared)

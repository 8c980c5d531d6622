"""The built-in scenes: the ADE20k layout, the same files from the same seed, a cache made once."""

from __future__ import annotations

import hashlib

from segkit.data import ADE20k, read_class_names
from segkit.scenes import CLASS_NAMES, builtin_scenes, write_scenes


def digest(root) -> str:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.relative_to(root).as_posix().encode() + p.read_bytes() for p in files)).hexdigest()


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    first = write_scenes(tmp_path / "a", seed=3, train_images=3, val_images=2)
    second = write_scenes(tmp_path / "b", seed=3, train_images=3, val_images=2)
    other = write_scenes(tmp_path / "c", seed=4, train_images=3, val_images=2)
    assert digest(first) == digest(second) != digest(other)


def test_scenes_read_as_ade20k_with_their_class_list(tmp_path):
    root = write_scenes(tmp_path, train_images=4, val_images=2)
    assert read_class_names(root) == tuple(CLASS_NAMES)
    image, mask = ADE20k(root, "training")[0]
    assert image.shape[0] == 3 and int(mask.max()) < len(CLASS_NAMES) and int(mask.min()) >= -1


def test_the_builtin_set_is_made_once(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGKIT_DATA", str(tmp_path))
    root = builtin_scenes(train_images=2, val_images=1, seed=9)
    stamp = (root / "objectInfo150.txt").stat().st_mtime_ns
    assert builtin_scenes(train_images=2, val_images=1, seed=9) == root
    assert (root / "objectInfo150.txt").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_scenes_written_in_parallel_are_one_set_in_the_ade_layout(tmp_path):
    from segkit.data import open_dataset
    from segkit.scenes import write_scenes_in_parallel

    root = write_scenes_in_parallel(tmp_path / "set", 5, 3, min_size=32, max_size=40, workers=2, class_list=False)
    names = sorted(p.name for p in (root / "images" / "training").iterdir())
    assert names == [f"ADE_train_{i:08d}.jpg" for i in range(1, 6)]
    assert not (root / "objectInfo150.txt").exists() and sorted(p.name for p in root.iterdir()) == [
        "annotations", "images"]
    assert open_dataset(root, "validation").num_classes == 150  # no class list: ADE20k's, the reference head
    listed = write_scenes_in_parallel(tmp_path / "listed", 2, 2, min_size=32, max_size=40, workers=2)
    assert open_dataset(listed, "training").num_classes == 16

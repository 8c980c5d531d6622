"""The ADE20k loader on generated folders in the official layout, and its errors."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import torch
from PIL import Image

from segkit.data import ADE20k, build_loaders, unpack_masks
from segkit.errors import DataError
from segkit.scenes import CLASS_NAMES
from segkit.transforms import MEAN, PadToSize, eval_transform, train_transform
from tests.conftest import write_pair


def test_labels_shift_to_training_convention(ade_root):
    dataset = ADE20k(ade_root, "training")
    image, mask = dataset[0]
    assert dataset.num_classes == 150
    assert image.shape == (3, 40, 48) and image.dtype == torch.uint8
    assert mask.dtype == torch.int64
    assert (mask[:20] == 0).all()  # ADE class 1 -> 0
    assert (mask[20:, :24] == 149).all()  # ADE class 150 -> 149
    assert (mask[20:, 24:] == -1).all()  # unlabelled -> ignore index


def test_grayscale_image_becomes_three_channels(ade_root):
    with Image.open(ade_root / "images" / "training" / "ADE_train_00000002.jpg") as picture:
        assert picture.mode == "L"
    image, _ = ADE20k(ade_root, "training")[1]
    assert image.shape == (3, 40, 48)
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


def test_rgba_and_16bit_images_are_read(tmp_path):
    labels = np.ones((10, 12), dtype=np.uint8)
    write_pair(tmp_path, "training", "rgba", np.full((10, 12, 3), 200, np.uint8), labels, "RGBA")
    deep = (np.arange(120, dtype=np.uint16).reshape(10, 12) * 500)
    (tmp_path / "images" / "training").mkdir(parents=True, exist_ok=True)
    Image.fromarray(deep).save(tmp_path / "images" / "training" / "deep.png")
    Image.fromarray(labels).save(tmp_path / "annotations" / "training" / "deep.png")
    dataset = ADE20k(tmp_path, "training")
    deep_image, _ = dataset[0]
    rgba_image, _ = dataset[1]
    assert rgba_image.shape == (3, 10, 12) and int(rgba_image.float().mean()) == 200
    assert deep_image.shape == (3, 10, 12)
    assert int(deep_image.max()) == (119 * 500) >> 8  # top 8 bits kept, not clipped to 255


def test_class_list_gives_num_classes(scenes_root):
    dataset = ADE20k(scenes_root, "validation")
    assert dataset.class_names == CLASS_NAMES
    assert dataset.num_classes == 16
    for index in range(len(dataset)):
        _, mask = dataset[index]
        assert int(mask.min()) >= -1 and int(mask.max()) < 16


@pytest.mark.parametrize("size", [16, 32])
def test_train_augmentation_shapes(scenes_root, size):
    dataset = ADE20k(scenes_root, "training", train_transform(size))
    torch.manual_seed(0)
    for index in range(len(dataset)):
        image, mask = dataset[index]
        assert image.shape == (3, size, size) and image.dtype == torch.uint8
        assert mask.shape == (size, size) and mask.dtype == torch.int64


def test_eval_transform_is_a_square_resize(ade_root):
    image, mask = ADE20k(ade_root, "validation", eval_transform(24))[0]
    assert image.shape == (3, 24, 24) and mask.shape == (24, 24)
    assert set(mask.unique().tolist()) <= {-1, 0, 149}  # nearest neighbour: no blended labels


def test_padding_fills_image_with_mean_and_mask_with_ignore(ade_root):
    dataset = ADE20k(ade_root, "training", train_transform(64))
    image, mask = dataset.load(0)
    padded = PadToSize(64)
    image, mask = padded(image, mask)
    from segkit.transforms import ToTrainingLabels

    image, mask = ToTrainingLabels()(image, mask)
    assert image.shape == (3, 64, 64) and mask.shape == (64, 64)
    assert (mask[40:] == -1).all() and (mask[:, 48:] == -1).all()
    assert image[:, 40:, :].float().mean(dim=(1, 2)).tolist() == [float(int(m)) for m in MEAN]


def test_crop_avoids_one_class_dominating():
    from torchvision import tv_tensors

    from segkit.transforms import ClassBalancedCrop

    labels = torch.ones(64, 64, dtype=torch.uint8)
    labels[:, 56:] = 2  # class 2 holds only the right eighth
    mask = tv_tensors.Mask(labels)
    image = tv_tensors.Image(torch.zeros(3, 64, 64, dtype=torch.uint8))

    def crops_with_class_2(retries: int) -> int:
        torch.manual_seed(0)
        crops = [ClassBalancedCrop(16, retries=retries)(image, mask)[1] for _ in range(200)]
        return sum(bool((crop == 2).any()) for crop in crops)

    # One try: a random 16x16 crop reaches class 2 about 8 times in 49. Ten tries: most do.
    assert crops_with_class_2(10) > 3 * crops_with_class_2(1)


# --- errors: each names the file or folder and what to do -------------------------------------

def test_missing_root(tmp_path):
    with pytest.raises(DataError, match=r"does not exist.*images/ and annotations/"):
        ADE20k(tmp_path / "nowhere", "training")


def test_wrong_layout_points_at_nested_folder(ade_root):
    with pytest.raises(DataError, match=r"did you mean .*ADEChallengeData2016"):
        ADE20k(ade_root.parent, "training")


def test_empty_split(tmp_path):
    (tmp_path / "images" / "training").mkdir(parents=True)
    (tmp_path / "annotations" / "training").mkdir(parents=True)
    with pytest.raises(DataError, match=r"holds no images"):
        ADE20k(tmp_path, "training")


def test_image_without_annotation(ade_root):
    (ade_root / "annotations" / "training" / "ADE_train_00000003.png").unlink()
    with pytest.raises(DataError, match=r"ADE_train_00000003.jpg has no annotation"):
        ADE20k(ade_root, "training")


def test_annotation_without_image(ade_root):
    (ade_root / "images" / "training" / "ADE_train_00000004.jpg").unlink()
    with pytest.raises(DataError, match=r"annotation .*ADE_train_00000004.png has no image"):
        ADE20k(ade_root, "training")


@pytest.mark.parametrize("broken", ["images/training/ADE_train_00000001.jpg",
                                    "annotations/training/ADE_train_00000001.png"])
def test_corrupt_files(ade_root, broken):
    path = ade_root / broken
    path.write_bytes(path.read_bytes()[:60])  # truncated
    with pytest.raises(DataError, match=rf"cannot read .*{path.name}.*replace or remove"):
        ADE20k(ade_root, "training")[0]


def test_label_beyond_class_count(scenes_root, tmp_path):
    import shutil

    root = shutil.copytree(scenes_root, tmp_path / "copy")
    path = root / "annotations" / "validation" / "ADE_val_00000001.png"
    labels = np.array(Image.open(path))
    labels[0, 0] = 17  # the scenes list 16 classes
    Image.fromarray(labels).save(path)
    with pytest.raises(DataError, match=r"ADE_val_00000001.png holds label 17.*16 classes"):
        ADE20k(root, "validation")[0]


def test_negative_label_in_a_32bit_annotation_is_refused(ade_root):
    """Read as int32 ("I", here a TIFF under the .png name), -1 would wrap to 255 in the uint8 mask."""
    path = ade_root / "annotations" / "training" / "ADE_train_00000001.png"
    labels = np.array(Image.open(path)).astype(np.int32)
    labels[3, 4] = -7
    Image.fromarray(labels).save(path, format="TIFF")
    with pytest.raises(DataError, match=r"ADE_train_00000001.png holds label -7; labels are 0 \(unlabelled\) to 150"):
        ADE20k(ade_root, "training")[0]


def test_image_over_the_decompression_bomb_limit_is_one_line(ade_root, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 900)  # the images are 48x40 = 1,920 pixels, over 2 x 900
    with pytest.raises(DataError, match=r"^image .*ADE_train_00000001.jpg is over PIL's decompression-bomb limit "
                                        r"\(Image size \(1920 pixels\) exceeds limit of 1800 pixels\); shrink"):
        ADE20k(ade_root, "training")[0]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # over the limit, under twice it: PIL warns
    with pytest.raises(DataError, match=r"^image .*ADE_train_00000001.jpg is over PIL's decompression-bomb limit"):
        ADE20k(ade_root, "training")[0]  # warnings are errors in the tests, so the warning is one line too


def test_check_files_reads_every_item_and_raises_the_first_bad_one(scenes_root, tmp_path):
    import shutil

    from segkit.data import check_files

    root = shutil.copytree(scenes_root, tmp_path / "copy")
    check_files(ADE20k(root, "validation", eval_transform(32)), workers=2)
    kept = ADE20k(root, "validation", eval_transform(32), keep_decoded=True)
    check_files(kept)
    assert sorted(kept.decoded) == list(range(len(kept)))  # what was read is kept for the evaluations
    for name in ("ADE_val_00000002.png", "ADE_val_00000004.png"):
        path = root / "annotations" / "validation" / name
        path.write_bytes(path.read_bytes()[:60])
    dataset = ADE20k(root, "validation", eval_transform(32))
    with pytest.raises(DataError, match=r"cannot read annotation .*ADE_val_00000002.png"):
        check_files(dataset, workers=2)
    with pytest.raises(DataError, match=r"cannot read annotation .*ADE_val_00000004.png"):
        check_files(dataset, indices=[2, 3, 0])
    check_files(dataset, indices=[0, 2])


def test_a_root_without_a_class_list_is_ade20k_and_says_so(ade_root, scenes_root):
    from segkit.data import class_list_note

    assert ADE20k(ade_root, "training").class_list is None
    assert class_list_note(ADE20k(ade_root, "training")).startswith(f"{ade_root} has no objectInfo150.txt: its labels "
                                                                    f"1..150 are taken as ADE20k's 150 classes")
    assert ADE20k(scenes_root, "training").class_list == scenes_root / "objectInfo150.txt"
    assert class_list_note(ADE20k(scenes_root, "training")) is None


def test_class_list_that_is_not_utf8_is_one_line(ade_root):
    (ade_root / "objectInfo150.txt").write_bytes("Idx\tName\n1\tcaf\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"cannot read class list .*objectInfo150.txt \(.*\); save it as UTF-8 text"):
        ADE20k(ade_root, "training")


def test_size_mismatch(ade_root):
    path = ade_root / "annotations" / "training" / "ADE_train_00000001.png"
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(path)
    with pytest.raises(DataError, match=r"is 48x40 but its annotation .* is 10x10"):
        ADE20k(ade_root, "training")[0]


def test_rgb_annotation_is_refused(ade_root):
    path = ade_root / "annotations" / "training" / "ADE_train_00000001.png"
    Image.fromarray(np.zeros((40, 48, 3), dtype=np.uint8)).save(path)
    with pytest.raises(DataError, match=r"is a RGB image; annotations are single-channel"):
        ADE20k(ade_root, "training")[0]


def test_16bit_annotation_within_range_is_read(ade_root):
    path = ade_root / "annotations" / "training" / "ADE_train_00000001.png"
    Image.fromarray(np.full((40, 48), 7, dtype=np.uint16)).save(path)
    _, mask = ADE20k(ade_root, "training")[0]
    assert (mask == 6).all()


def test_ade20k_names_and_palette_without_object_info(ade_root):
    from segkit.data import ADE20K_CLASSES, ADE20K_PALETTE
    from segkit.teaching.gallery import palette

    dataset = ADE20k(ade_root, "training")  # the fixture has no objectInfo150.txt
    names = dataset.class_names
    assert (names[0], names[2], names[12], names[149]) == ("wall", "sky", "person", "flag")
    assert len(ADE20K_PALETTE) == 150 and palette(names).shape == (150, 3)
    assert names == ADE20K_CLASSES and palette(names)[0].tolist() == [120, 120, 120]


def test_kept_decoded_pairs_give_the_same_items(scenes_root):
    """Keeping decoded pairs in memory changes speed only: the same augmented items, epoch after epoch,
    and the kept pair is never altered by the transform."""
    fresh = ADE20k(scenes_root, "training", train_transform(48))
    kept = ADE20k(scenes_root, "training", train_transform(48), keep_decoded=True)
    for _ in range(2):  # the second epoch reads from memory
        for index in range(len(fresh)):
            torch.manual_seed(index)
            image, mask = fresh[index]
            torch.manual_seed(index)
            kept_image, kept_mask = kept[index]
            assert torch.equal(image, kept_image) and torch.equal(mask, kept_mask)
    assert len(kept.decoded) == len(kept)
    for index, (image, mask) in kept.decoded.items():
        read_image, read_mask = kept.read(index)
        assert torch.equal(image, read_image) and torch.equal(mask, read_mask)


def test_loader_workers_start_from_the_fork_server_and_give_the_same_batches(scenes_root):
    """Workers never fork the training process (a kernel's threads would go with it)."""
    val_set = ADE20k(scenes_root, "validation", eval_transform(32))
    _, in_process = build_loaders(val_set, val_set, 2, seed=0)
    _, with_workers = build_loaders(val_set, val_set, 2, seed=0, num_workers=2)
    assert with_workers.multiprocessing_context.get_start_method() == "forkserver"
    for (images, masks), (worker_images, worker_masks) in zip(in_process, with_workers, strict=True):
        assert torch.equal(images, worker_images) and torch.equal(masks, worker_masks)


@pytest.mark.timeout(60)
def test_a_dead_loader_worker_is_an_error_not_a_wait(scenes_root):
    train_set = ADE20k(scenes_root, "training", eval_transform(32))
    loader, _ = build_loaders(train_set, train_set, 1, seed=0, num_workers=1)
    batches = iter(loader)
    next(batches)
    time.sleep(1)  # the worker has made its prefetched batches and waits for more
    os.kill(batches._workers[0].pid, signal.SIGKILL)  # the out-of-memory killer's way
    # PyTorch raises at once (the worker's end of the queue is gone; ConnectionResetError) or at its
    # next liveness check (RuntimeError naming the worker), depending on what the worker was doing.
    with pytest.raises((ConnectionError, EOFError, RuntimeError)):
        for _ in batches:
            pass


def test_packed_batches_carry_one_byte_masks_that_unpack_to_the_same_labels(scenes_root):
    """Training moves masks as ADE20k's annotation values (uint8) and widens them on the device."""
    val_set = ADE20k(scenes_root, "validation", eval_transform(32))
    _, plain = build_loaders(val_set, val_set, 2, seed=0)
    _, packed = build_loaders(val_set, val_set, 2, seed=0, packed=True)
    lowest = []
    for (images, masks), packed_batch in zip(plain, packed, strict=True):
        assert packed_batch[1].dtype == torch.uint8
        unpacked_images, unpacked_masks = unpack_masks(packed_batch)
        assert torch.equal(images, unpacked_images) and torch.equal(masks, unpacked_masks)
        assert unpacked_masks.dtype == torch.int64
        lowest.append(int(unpacked_masks.min()))
    assert min(lowest) == -1  # ignored pixels came through

"""Paired transforms: shapes, the 0 -> ignore label mapping, padding with the ignore label, normalization."""

from __future__ import annotations

import torch
from torchvision import tv_tensors

from segkit.transforms import (
    IGNORE_INDEX,
    MEAN,
    STD,
    ClassBalancedCrop,
    PadToSize,
    ToTrainingLabels,
    eval_transform,
    normalize,
    train_transform,
)


def pair(height: int, width: int, labels: torch.Tensor | None = None):
    image = tv_tensors.Image(torch.randint(0, 256, (3, height, width), dtype=torch.uint8))
    mask = labels if labels is not None else torch.randint(0, 4, (height, width), dtype=torch.uint8)
    return image, tv_tensors.Mask(mask)


def test_labels_shift_down_and_unlabelled_becomes_ignore():
    _, mask = ToTrainingLabels()(*pair(1, 4, torch.tensor([[0, 1, 2, 150]], dtype=torch.uint8)))
    assert mask.dtype == torch.int64 and mask.tolist() == [[IGNORE_INDEX, 0, 1, 149]]
    assert IGNORE_INDEX == -1


def test_train_transform_gives_square_crops_of_the_size():
    torch.manual_seed(0)
    for height, width in [(40, 30), (120, 200), (64, 64)]:
        image, mask = train_transform(64)(*pair(height, width))
        assert image.shape == (3, 64, 64) and image.dtype == torch.uint8
        assert mask.shape == (64, 64) and mask.dtype == torch.int64
        assert int(mask.min()) >= IGNORE_INDEX and int(mask.max()) <= 2


def test_padding_is_ignored_and_mean_coloured():
    image, mask = PadToSize(6)(*pair(4, 5, torch.ones(4, 5, dtype=torch.uint8)))
    image, mask = ToTrainingLabels()(image, mask)
    assert mask.shape == (6, 6) and (mask[4:] == IGNORE_INDEX).all() and (mask[:, 5] == IGNORE_INDEX).all()
    assert (mask[:4, :5] == 0).all()
    assert image[:, 5, 5].tolist() == [int(m) for m in MEAN]


def test_eval_transform_resizes_masks_with_nearest_labels():
    labels = torch.zeros(8, 8, dtype=torch.uint8)
    labels[:, 4:] = 3
    _, mask = eval_transform(4)(*pair(8, 8, labels))
    assert set(mask.unique().tolist()) == {IGNORE_INDEX, 2}  # no blended label between 0 and 3


def test_class_balanced_crop_prefers_crops_with_several_classes():
    labels = torch.ones(64, 64, dtype=torch.uint8)
    labels[:, 56:] = 2  # a thin strip of a second class on the right
    torch.manual_seed(0)
    crops = [ClassBalancedCrop(16, max_class_ratio=0.75, retries=50)(*pair(64, 64, labels))[1] for _ in range(20)]
    assert sum(bool((crop == 2).any()) for crop in crops) >= 15


def test_normalize_uses_the_reference_statistics():
    images = torch.tensor(MEAN).view(1, 3, 1, 1).expand(2, 3, 2, 2).clone()
    assert torch.allclose(normalize(images), torch.zeros(2, 3, 2, 2), atol=1e-6)
    shifted = normalize(images + torch.tensor(STD).view(1, 3, 1, 1))
    assert torch.allclose(shifted, torch.ones(2, 3, 2, 2), atol=1e-6)

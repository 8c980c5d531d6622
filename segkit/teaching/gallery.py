"""Pictures of segmentation: class colours, coloured masks, and image / truth / prediction rows.

Everything here returns plain arrays or HTML strings (PNG images inlined as data URIs), so the
pictures show in JupyterLab, in an executed notebook on GitHub and in the summary page alike,
with nothing loaded from the network. ``Predictions`` runs a trained run's model on validation
images; ``segkit.teaching.widgets.PredictionGallery`` is the thin widget around it.
"""

from __future__ import annotations

import base64
import colorsys
import html
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from segkit.data import ADE20K_CLASSES, ADE20K_PALETTE, open_dataset
from segkit.errors import ConfigError
from segkit.inference import load_model, predict
from segkit.transforms import eval_transform

#: Colour of ignored (unlabelled) pixels.
IGNORED_COLOR = (40, 40, 40)
#: Colours for class names of the built-in scenes (and the same names in ADE20k).
NAMED_COLORS = {
    "sky": (120, 180, 240), "cloud": (225, 230, 240), "mountain": (130, 110, 150),
    "grass": (90, 190, 70), "water": (40, 90, 200), "sand": (230, 200, 120), "road": (120, 120, 120),
    "field": (200, 220, 90), "tree": (20, 110, 40), "building": (190, 80, 60), "car": (240, 60, 200),
    "person": (255, 150, 30), "boat": (250, 240, 60), "rock": (150, 130, 100), "fence": (170, 40, 120),
    "pole": (255, 255, 255),
}


def palette(class_names: Sequence[str]) -> np.ndarray:
    """One RGB colour per class: ADE20k's standard palette for its 150 classes (as mmsegmentation
    draws them), else named colours where known and evenly spread hues otherwise.

    Returns:
        ``(num_classes, 3)`` uint8.

    Example:
        >>> palette(["sky", "something else"]).tolist()
        [[120, 180, 240], [77, 129, 255]]
        >>> palette(ADE20K_CLASSES)[2].tolist()  # sky
        [6, 230, 230]
    """
    if tuple(class_names) == ADE20K_CLASSES:
        return np.array(ADE20K_PALETTE, dtype=np.uint8)
    colors = []
    for index, name in enumerate(class_names):
        key = name.split(";")[0].split(",")[0].strip().lower()
        if key in NAMED_COLORS:
            colors.append(NAMED_COLORS[key])
        else:  # golden-ratio hue steps keep neighbouring class indices apart
            hue = (index * 0.618033988749895) % 1.0
            colors.append(tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.7, 1.0)))
    return np.array(colors, dtype=np.uint8)


def colorize(mask: np.ndarray | torch.Tensor, colors: np.ndarray) -> np.ndarray:
    """A training mask (class indices, -1 = ignored) as an RGB picture.

    Shape:
        - mask: ``(H, W)``; output ``(H, W, 3)`` uint8.
    """
    mask = np.asarray(mask)
    picture = np.empty((*mask.shape, 3), dtype=np.uint8)
    picture[:] = IGNORED_COLOR
    labelled = mask >= 0
    picture[labelled] = colors[mask[labelled]]
    return picture


def blend_masks(first: np.ndarray, second: np.ndarray, weight: float, colors: np.ndarray) -> np.ndarray:
    """A MixUp target as a picture: each pixel ``weight`` of the first mask's colour, the rest the other's."""
    mixed = weight * colorize(first, colors).astype(np.float32) + (1 - weight) * colorize(second, colors)
    return mixed.round().astype(np.uint8)


def to_picture(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """An image tensor ``(3, H, W)`` on the 0-255 scale as uint8 ``(H, W, 3)``."""
    array = image.detach().cpu().float().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] == 3:
        array = array.transpose(1, 2, 0)
    return array.clip(0, 255).round().astype(np.uint8)


def png_data_uri(picture: np.ndarray) -> str:
    """An ``(H, W, 3)`` uint8 picture as a ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def picture_table(rows: Sequence[Sequence[np.ndarray]], columns: Sequence[str], width: int = 128,
                  row_labels: Sequence[str] | None = None) -> str:
    """An HTML table of pictures, nearest-neighbour upscaled to ``width`` pixels."""
    style = f"width:{width}px;image-rendering:pixelated;display:block"
    head = "".join(f"<th style='text-align:center'>{html.escape(c)}</th>" for c in columns)
    if row_labels is not None:
        head = "<th></th>" + head
    body = []
    for index, row in enumerate(rows):
        cells = "".join(f"<td><img src='{png_data_uri(p)}' style='{style}'></td>" for p in row)
        if row_labels is not None:
            cells = f"<td>{html.escape(row_labels[index])}</td>" + cells
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def legend(class_names: Sequence[str], colors: np.ndarray) -> str:
    """An HTML legend: a colour swatch and the name of every class, plus 'ignored'."""
    items = [(name, tuple(int(c) for c in color)) for name, color in zip(class_names, colors, strict=True)]
    items.append(("ignored", IGNORED_COLOR))
    swatches = "".join(
        f"<span style='display:inline-block;margin:2px 10px 2px 0'><span style='display:inline-block;"
        f"width:12px;height:12px;background:rgb{color};border:1px solid #888;vertical-align:middle'>"
        f"</span> {html.escape(name)}</span>" for name, color in items)
    return f"<div style='max-width:760px'>{swatches}</div>"


def samples_html(root: str | Path, split: str = "training", count: int = 6, size: int = 96) -> str:
    """A few images of a dataset with their masks, and the class legend (for a first look at data)."""
    dataset = open_dataset(root, split, eval_transform(size))
    colors = palette(dataset.class_names)
    rows = []
    for index in range(min(count, len(dataset))):
        image, mask = dataset[index]
        rows.append((to_picture(image), colorize(mask, colors)))
    pairs = [np.concatenate(row, axis=1) for row in rows]
    table = picture_table([pairs[i:i + 3] for i in range(0, len(pairs), 3)],
                          ["image | mask"] * min(3, len(pairs)), width=2 * size)
    return table + legend(dataset.class_names, colors)


class Predictions:
    """A trained run's model applied to its validation images.

    Args:
        run_folder: a finished run folder (it has ``model.pt``).
        data: the data root to take validation images from (default: the run's own).

    Example:
        ``Predictions("runs/hot-cpu-seed17").html(range(4))``
    """

    def __init__(self, run_folder: str | Path, data: str | Path | None = None):
        self.model, self.run = load_model(run_folder)
        size = self.run.info["profile"]["image_size"]
        self.dataset = self.run.dataset("validation", eval_transform(size), data)
        self.colors = palette(self.dataset.class_names)

    def __len__(self) -> int:
        return len(self.dataset)

    def rows(self, indices: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(image, ground truth, prediction)`` pictures for validation images ``indices``."""
        indices = list(indices)
        bad = [i for i in indices if not 0 <= i < len(self.dataset)]
        if bad:
            raise ConfigError(f"image index {bad[0]} is out of range; the validation set has "
                              f"{len(self.dataset)} images (0 to {len(self.dataset) - 1})")
        if not indices:
            return []
        images, masks = zip(*(self.dataset[i] for i in indices), strict=True)
        predicted = predict(self.model, torch.stack(images))  # (N, H, W)
        return [(to_picture(image), colorize(mask, self.colors), colorize(prediction, self.colors))
                for image, mask, prediction in zip(images, masks, predicted, strict=True)]

    def html(self, indices: Sequence[int], width: int = 128) -> str:
        """The gallery as HTML: one row per image, then the class legend."""
        indices = list(indices)
        table = picture_table(self.rows(indices), ["image", "ground truth", "prediction"], width=width,
                              row_labels=[f"#{i}" for i in indices])
        title = (f"<b>{html.escape(self.run.name)}</b>: predictions on validation images "
                 f"(mIoU {self.run.final.get('miou', float('nan')):.2f})")
        return f"<div>{title}{table}{legend(self.dataset.class_names, self.colors)}</div>"

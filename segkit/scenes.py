"""The built-in dataset: procedural outdoor scenes written in the ADEChallengeData2016 layout.

Every scene has a sky, often mountains, a ground split into stuff regions (grass, sand, water,
road, field) with wavy borders, and objects standing on it (trees, buildings, cars, people,
boats, rocks, fences, poles) that shrink towards the horizon and occlude each other. Each class
has a texture, a shape and a colour range; colours overlap between classes and every image gets
its own lighting, tint, noise and JPEG quality, so neither colour nor texture alone names a
class. Unlabelled clutter (label 0) sits among the objects, as ADE20k's "other objects" do.

The layout is that of the extracted ``ADEChallengeData2016.zip``::

    OUT/images/training/ADE_train_00000001.jpg      OUT/annotations/training/ADE_train_00000001.png
    OUT/images/validation/ADE_val_00000001.jpg      OUT/annotations/validation/ADE_val_00000001.png
    OUT/objectInfo150.txt   (class list; the file keeps ADE20k's name, with this dataset's rows)
    OUT/sceneCategories.txt

Scene ``i`` of a split is drawn from its own generator seeded with ``(seed, split, i)``, so a
dataset is a pure function of its arguments and a larger one extends a smaller one.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from segkit import cache

#: Class names in label order: annotation value k (1-based) is ``CLASS_NAMES[k - 1]``; 0 is unlabelled.
CLASS_NAMES = (
    "sky", "cloud", "mountain", "grass", "water", "sand", "road", "field",
    "tree", "building", "car", "person", "boat", "rock", "fence", "pole",
)
LABEL = {name: index + 1 for index, name in enumerate(CLASS_NAMES)}

#: Split folder name -> file-name prefix, as in ADE20k.
SPLITS = {"training": "ADE_train", "validation": "ADE_val"}

#: Sizes of the CPU-profile set: enough variety that mIoU keeps climbing for tens of epochs.
DEFAULT_TRAIN_IMAGES = 200
DEFAULT_VAL_IMAGES = 96


# ---------------------------------------------------------------------------------------------
# Textures: functions (rng, height, width, rgb) -> float image (H, W, 3) in [0, 1]
# ---------------------------------------------------------------------------------------------

def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Value noise in [-1, 1] with features about ``cell`` pixels wide, shape (H, W)."""
    grid = rng.uniform(-1, 1, (max(2, int(height / cell) + 2), max(2, int(width / cell) + 2)))
    image = Image.fromarray(grid.astype(np.float32)).resize((width, height), Image.BICUBIC)
    return np.clip(np.asarray(image), -1, 1)


def _shade(rgb: np.ndarray, pattern: np.ndarray, strength: float) -> np.ndarray:
    """Modulate a base colour (3,) by a pattern (H, W) in [-1, 1]."""
    return np.clip(rgb[None, None, :] * (1 + strength * pattern[..., None]), 0, 1)


def texture_smooth(rng, height, width, rgb):
    return _shade(rgb, smooth_noise(rng, height, width, rng.uniform(8, 24)), 0.12)


def texture_grainy(rng, height, width, rgb):
    grain = rng.uniform(-1, 1, (height, width))
    return _shade(rgb, 0.6 * grain + 0.4 * smooth_noise(rng, height, width, 12), 0.25)


def texture_leafy(rng, height, width, rgb):
    blobs = smooth_noise(rng, height, width, 2.5) + 0.5 * smooth_noise(rng, height, width, 6)
    return _shade(rgb, np.sign(blobs) * np.abs(blobs) ** 0.5, 0.35)


def texture_ripples(rng, height, width, rgb):
    y = np.arange(height)[:, None] + 3 * smooth_noise(rng, height, width, 10)
    waves = np.sin(y * rng.uniform(0.8, 1.6) + rng.uniform(0, 6.3))
    return _shade(rgb, 0.7 * waves + 0.3 * smooth_noise(rng, height, width, 5), 0.22)


def texture_stripes(rng, height, width, rgb):
    angle = rng.uniform(-0.6, 0.6)
    y, x = np.mgrid[0:height, 0:width]
    rows = np.sin((y * np.cos(angle) + x * np.sin(angle)) * rng.uniform(0.9, 1.5))
    return _shade(rgb, 0.8 * rows + 0.2 * rng.uniform(-1, 1, (height, width)), 0.3)


def texture_rough(rng, height, width, rgb):
    pattern = 0.5 * smooth_noise(rng, height, width, 3) + 0.5 * smooth_noise(rng, height, width, 9)
    return _shade(rgb, pattern, 0.45)


def texture_windows(rng, height, width, rgb):
    """A facade: a grid of dark windows on a wall colour."""
    step_y, step_x = rng.integers(4, 8), rng.integers(4, 8)
    y, x = np.mgrid[0:height, 0:width]
    window = ((y % step_y) < step_y // 2) & ((x % step_x) < step_x // 2)
    image = texture_smooth(rng, height, width, rgb)
    glass = np.array([0.15, 0.18, 0.25]) * rng.uniform(0.6, 1.6)
    image[window] = glass
    return image


def texture_metal(rng, height, width, rgb):
    y = np.linspace(-1, 1, height)[:, None].repeat(width, axis=1)
    return _shade(rgb, 0.6 * np.cos(3 * y) + 0.1 * rng.uniform(-1, 1, (height, width)), 0.3)


def texture_cloth(rng, height, width, rgb):
    y, x = np.mgrid[0:height, 0:width]
    weave = np.sin(x * 2.2) * np.sin(y * 2.2)
    return _shade(rgb, 0.5 * weave + 0.5 * smooth_noise(rng, height, width, 4), 0.25)


def _hsv(rng: np.random.Generator, hue: tuple[float, float], sat: tuple[float, float],
         val: tuple[float, float]) -> np.ndarray:
    """A random colour (3,) in [0, 1] from hue/saturation/value ranges (hue in [0, 1), wraps)."""
    h = rng.uniform(*hue) % 1.0
    s, v = rng.uniform(*sat), rng.uniform(*val)
    i, f = int(h * 6) % 6, h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


#: Per class: (texture, colour sampler). Colour ranges overlap on purpose (grass/tree/field,
#: water/sky, road/rock/mountain), so texture and shape must decide.
APPEARANCE: dict[str, tuple[Callable, Callable[[np.random.Generator], np.ndarray]]] = {
    "sky": (texture_smooth, lambda r: _hsv(r, (0.52, 0.66), (0.15, 0.6), (0.7, 1.0))),
    "cloud": (texture_rough, lambda r: _hsv(r, (0.5, 0.7), (0.0, 0.15), (0.75, 1.0))),
    "mountain": (texture_rough, lambda r: _hsv(r, (0.05, 0.7), (0.1, 0.4), (0.3, 0.65))),
    "grass": (texture_grainy, lambda r: _hsv(r, (0.2, 0.38), (0.4, 0.8), (0.35, 0.75))),
    "water": (texture_ripples, lambda r: _hsv(r, (0.45, 0.62), (0.3, 0.8), (0.35, 0.8))),
    "sand": (texture_grainy, lambda r: _hsv(r, (0.08, 0.15), (0.25, 0.55), (0.65, 0.95))),
    "road": (texture_smooth, lambda r: _hsv(r, (0.0, 1.0), (0.0, 0.1), (0.2, 0.5))),
    "field": (texture_stripes, lambda r: _hsv(r, (0.06, 0.3), (0.4, 0.8), (0.4, 0.8))),
    "tree": (texture_leafy, lambda r: _hsv(r, (0.15, 0.4), (0.4, 0.9), (0.2, 0.6))),
    "building": (texture_windows, lambda r: _hsv(r, (0.0, 0.15), (0.05, 0.5), (0.45, 0.9))),
    "car": (texture_metal, lambda r: _hsv(r, (0.0, 1.0), (0.3, 0.9), (0.3, 0.9))),
    "person": (texture_cloth, lambda r: _hsv(r, (0.0, 1.0), (0.2, 0.8), (0.2, 0.8))),
    "boat": (texture_metal, lambda r: _hsv(r, (0.0, 1.0), (0.0, 0.6), (0.5, 1.0))),
    "rock": (texture_rough, lambda r: _hsv(r, (0.0, 0.15), (0.0, 0.25), (0.3, 0.6))),
    "fence": (texture_stripes, lambda r: _hsv(r, (0.05, 0.12), (0.3, 0.7), (0.3, 0.7))),
    "pole": (texture_metal, lambda r: _hsv(r, (0.0, 1.0), (0.0, 0.2), (0.2, 0.6))),
}


# ---------------------------------------------------------------------------------------------
# Canvas: an image and its label map, painted region by region
# ---------------------------------------------------------------------------------------------

class Canvas:
    """An RGB float image and a label map that are painted together."""

    def __init__(self, rng: np.random.Generator, height: int, width: int):
        self.rng, self.height, self.width = rng, height, width
        self.image = np.zeros((height, width, 3))
        self.label = np.zeros((height, width), dtype=np.uint8)
        self.y, self.x = np.mgrid[0:height, 0:width].astype(np.float64)

    def paint(self, region: np.ndarray, name: str | None) -> None:
        """Fill a boolean region with a class's texture, or with random clutter (label 0)."""
        if not region.any():
            return
        if name is None:
            texture = list(APPEARANCE.values())[self.rng.integers(len(APPEARANCE))][0]
            colour = self.rng.uniform(0.1, 0.9, 3)
        else:
            texture, sample_colour = APPEARANCE[name]
            colour = sample_colour(self.rng)
        # Texture only the region's bounding box: objects are small, and this keeps generation fast.
        rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
        box = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        patch = texture(self.rng, rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1, colour)
        inside = region[box]
        self.image[box][inside] = patch[inside]
        self.label[box][inside] = 0 if name is None else LABEL[name]

    def ellipse(self, cy, cx, ry, rx) -> np.ndarray:
        return ((self.y - cy) / max(ry, 0.5)) ** 2 + ((self.x - cx) / max(rx, 0.5)) ** 2 <= 1

    def box(self, top, left, bottom, right) -> np.ndarray:
        return (self.y >= top) & (self.y < bottom) & (self.x >= left) & (self.x < right)

    def triangle(self, apex_y, apex_x, base_y, half_width) -> np.ndarray:
        t = (self.y - apex_y) / max(base_y - apex_y, 1)
        return (t >= 0) & (t <= 1) & (np.abs(self.x - apex_x) <= t * half_width)

    def blob(self, cy, cx, radius, roughness=0.35) -> np.ndarray:
        """An irregular round shape: a circle whose radius wobbles with the angle."""
        angle = np.arctan2(self.y - cy, self.x - cx)
        phases = self.rng.uniform(0, 6.3, 3)
        wobble = sum(np.sin(k * angle + p) / k for k, p in zip((2, 3, 5), phases, strict=True))
        return np.hypot(self.y - cy, self.x - cx) <= radius * (1 + roughness * wobble / 1.8)

    def wavy_edge(self, base: float, amplitude: float) -> np.ndarray:
        """A boundary height per column, (W,), wandering around ``base``."""
        return base + amplitude * smooth_noise(self.rng, 1, self.width, self.width / 3)[0]


# ---------------------------------------------------------------------------------------------
# Objects: each draws itself standing on the ground at (base_y, cx) with a given height
# ---------------------------------------------------------------------------------------------

def draw_tree(c: Canvas, base_y: float, cx: float, size: float) -> None:
    trunk_w = max(1.0, size * 0.12)
    c.paint(c.box(base_y - size * 0.45, cx - trunk_w / 2, base_y, cx + trunk_w / 2), "tree")
    if c.rng.random() < 0.5:  # conifer
        c.paint(c.triangle(base_y - size, cx, base_y - size * 0.3, size * 0.35), "tree")
    else:
        c.paint(c.blob(base_y - size * 0.65, cx, size * 0.38), "tree")


def draw_building(c: Canvas, base_y: float, cx: float, size: float) -> None:
    half = size * c.rng.uniform(0.3, 0.7)
    c.paint(c.box(base_y - size, cx - half, base_y, cx + half), "building")
    if c.rng.random() < 0.5:
        c.paint(c.triangle(base_y - size * 1.35, cx, base_y - size, half * 1.1), "building")


def draw_car(c: Canvas, base_y: float, cx: float, size: float) -> None:
    length = size * 2.2
    body = c.box(base_y - size * 0.75, cx - length / 2, base_y - size * 0.2, cx + length / 2)
    cabin = c.box(base_y - size, cx - length * 0.28, base_y - size * 0.7, cx + length * 0.22)
    wheels = c.ellipse(base_y - size * 0.2, cx - length * 0.3, size * 0.2, size * 0.2) | c.ellipse(
        base_y - size * 0.2, cx + length * 0.3, size * 0.2, size * 0.2)
    c.paint(body | cabin, "car")
    c.image[wheels] = 0.05 + 0.1 * c.rng.random()
    c.label[wheels] = LABEL["car"]


def draw_person(c: Canvas, base_y: float, cx: float, size: float) -> None:
    head = c.ellipse(base_y - size * 0.9, cx, size * 0.1, size * 0.08)
    torso = c.ellipse(base_y - size * 0.6, cx, size * 0.22, size * 0.12)
    legs = c.box(base_y - size * 0.42, cx - size * 0.09, base_y, cx - size * 0.02) | c.box(
        base_y - size * 0.42, cx + size * 0.02, base_y, cx + size * 0.09)
    c.paint(torso | legs, "person")
    c.image[head] = _hsv(c.rng, (0.03, 0.1), (0.3, 0.6), (0.35, 0.95))
    c.label[head] = LABEL["person"]


def draw_boat(c: Canvas, base_y: float, cx: float, size: float) -> None:
    length = size * 1.6
    t = (c.y - (base_y - size * 0.35)) / (size * 0.35)
    hull = (t >= 0) & (t <= 1) & (np.abs(c.x - cx) <= length / 2 * (1 - 0.4 * t))
    c.paint(hull, "boat")
    if c.rng.random() < 0.6:
        sail = c.triangle(base_y - size * 1.3, cx, base_y - size * 0.35, size * 0.4) & (c.x >= cx)
        c.paint(sail, "boat")


def draw_rock(c: Canvas, base_y: float, cx: float, size: float) -> None:
    c.paint(c.blob(base_y - size * 0.3, cx, size * 0.45, roughness=0.6) & (c.y <= base_y), "rock")


def draw_fence(c: Canvas, base_y: float, cx: float, size: float) -> None:
    length = size * c.rng.uniform(2, 5)
    rails = c.box(base_y - size * 0.55, cx - length / 2, base_y - size * 0.4, cx + length / 2) | c.box(
        base_y - size * 0.25, cx - length / 2, base_y - size * 0.12, cx + length / 2)
    gap = max(2.0, size * 0.45)
    posts = c.box(base_y - size * 0.7, cx - length / 2, base_y, cx + length / 2) & (
        ((c.x - cx) % gap) < max(1.0, size * 0.1))
    c.paint(rails | posts, "fence")


def draw_pole(c: Canvas, base_y: float, cx: float, size: float) -> None:
    width = max(1.0, size * 0.06)
    pole = c.box(base_y - size * 1.4, cx - width / 2, base_y, cx + width / 2)
    lamp = c.box(base_y - size * 1.45, cx - size * 0.2, base_y - size * 1.35, cx + width / 2)
    c.paint(pole | lamp, "pole")


def draw_clutter(c: Canvas, base_y: float, cx: float, size: float) -> None:
    shape = c.blob(base_y - size * 0.4, cx, size * 0.4, roughness=0.8)
    if c.rng.random() < 0.5:
        shape = c.box(base_y - size * 0.8, cx - size * 0.3, base_y, cx + size * 0.3)
    c.paint(shape, None)


#: Objects by the ground they can stand on, with their height relative to the perspective scale.
LAND_OBJECTS = [(draw_tree, 1.0), (draw_building, 0.9), (draw_car, 0.4), (draw_person, 0.55),
                (draw_rock, 0.35), (draw_fence, 0.35), (draw_pole, 0.8), (draw_clutter, 0.4)]
WATER_OBJECTS = [(draw_boat, 0.45), (draw_rock, 0.3), (draw_clutter, 0.3)]


# ---------------------------------------------------------------------------------------------
# A scene
# ---------------------------------------------------------------------------------------------

def render_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one scene.

    Args:
        rng: the generator that decides everything in the scene.
        height, width: image size in pixels.

    Returns:
        ``(image, label)``: uint8 arrays of shapes ``(H, W, 3)`` and ``(H, W)``, labels in
        ``0..len(CLASS_NAMES)`` with 0 for unlabelled clutter.
    """
    c = Canvas(rng, height, width)
    horizon = height * rng.uniform(0.25, 0.6)

    c.paint(np.ones((height, width), dtype=bool), "sky")
    for _ in range(rng.integers(0, 4)):
        c.paint(c.blob(rng.uniform(0, horizon), rng.uniform(0, width), rng.uniform(3, 0.15 * width + 4),
                       roughness=0.7), "cloud")
    if rng.random() < 0.6:
        ridge = c.wavy_edge(horizon - rng.uniform(0.1, 0.3) * height, 0.15 * height)
        c.paint(c.y >= ridge[None, :], "mountain")

    # Ground: bands of stuff from the horizon down, each border wavy.
    ground_kinds = rng.choice(["grass", "water", "sand", "field", "grass", "sand"], size=rng.integers(1, 4),
                              replace=False)
    borders = np.sort(rng.uniform(horizon, height, len(ground_kinds) - 1))
    tops = [horizon, *borders]
    surface = np.zeros((height, width), dtype=np.uint8)  # 1 where the ground is water
    for top, kind in zip(tops, ground_kinds, strict=True):
        region = c.y >= c.wavy_edge(top, 0.04 * height + 2)[None, :]
        c.paint(region, kind)
        surface[region] = kind == "water"
    if rng.random() < 0.45:  # a road receding to a vanishing point on the horizon
        vanish_x = rng.uniform(0.2, 0.8) * width
        spread = (c.y - horizon) / max(height - horizon, 1) * rng.uniform(0.25, 0.6) * width
        road = (c.y > horizon) & (np.abs(c.x - vanish_x) <= spread)
        c.paint(road, "road")
        surface[road] = 0

    # Objects: far (near the horizon, small) first, so nearer ones occlude them.
    count = rng.integers(3, 11)
    bases = np.sort(rng.uniform(horizon + 1, height + 0.15 * height, count))
    for base_y in bases:
        depth = (base_y - horizon) / (height - horizon)  # 0 at the horizon, 1 at the bottom
        scale = height * (0.1 + 0.45 * depth) * rng.uniform(0.7, 1.3)
        cx = rng.uniform(0, width)
        on_water = surface[min(int(base_y), height - 1), int(cx)] == 1
        draw, relative_size = (WATER_OBJECTS if on_water else LAND_OBJECTS)[
            rng.integers(len(WATER_OBJECTS if on_water else LAND_OBJECTS))]
        draw(c, base_y, cx, scale * relative_size)

    # Photometric variety per image: exposure, contrast, tint, sensor noise.
    image = c.image * rng.uniform(0.6, 1.25) * rng.uniform(0.85, 1.15, 3)[None, None, :]
    image = (image - 0.5) * rng.uniform(0.7, 1.2) + 0.5
    image = image + rng.normal(0, rng.uniform(0.005, 0.04), image.shape)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), c.label


def write_scenes(
    out: str | Path,
    *,
    seed: int = 0,
    train_images: int = DEFAULT_TRAIN_IMAGES,
    val_images: int = DEFAULT_VAL_IMAGES,
    min_size: int = 96,
    max_size: int = 144,
) -> Path:
    """Generate the built-in dataset in the ADEChallengeData2016 layout.

    Args:
        out: folder to write (created; existing files of the same names are replaced).
        seed: the dataset's seed; the same arguments give the same files.
        train_images, val_images: images per split.
        min_size, max_size: range of each image's height and width, drawn independently.

    Returns:
        ``out`` as a ``Path``, ready for ``segkit.ADE20k(out, split)``.

    Example:
        >>> import tempfile
        >>> root = write_scenes(tempfile.mkdtemp(), train_images=2, val_images=1)
        >>> sorted(p.name for p in (root / "images" / "training").iterdir())
        ['ADE_train_00000001.jpg', 'ADE_train_00000002.jpg']
    """
    out = Path(out)
    counts = {"training": train_images, "validation": val_images}
    pixel_counts = {split: np.zeros(len(CLASS_NAMES) + 1, dtype=np.int64) for split in SPLITS}
    scene_lines = []
    for split_index, (split, prefix) in enumerate(SPLITS.items()):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for index in range(1, counts[split] + 1):
            rng = np.random.default_rng([seed, split_index, index])
            height, width = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
            image, label = render_scene(rng, height, width)
            name = f"{prefix}_{index:08d}"
            picture = Image.fromarray(image)
            if rng.random() < 0.02:  # ADE20k holds a few grayscale JPEGs; so does this set
                picture = picture.convert("L")
            picture.save(out / "images" / split / f"{name}.jpg", quality=int(rng.integers(70, 96)))
            Image.fromarray(label).save(out / "annotations" / split / f"{name}.png")
            pixel_counts[split] += np.bincount(label.ravel(), minlength=len(CLASS_NAMES) + 1)
            scene_lines.append(f"{name} outdoor\n")
    _write_object_info(out / "objectInfo150.txt", pixel_counts)
    (out / "sceneCategories.txt").write_text("".join(scene_lines))
    return out


def _write_chunk(job: tuple[Path, int, int, int, int, int]) -> Path:
    out, seed, train_images, val_images, min_size, max_size = job
    return write_scenes(out, seed=seed, train_images=train_images, val_images=val_images,
                        min_size=min_size, max_size=max_size)


def write_scenes_in_parallel(out: str | Path, train_images: int, val_images: int, *, min_size: int = 96,
                             max_size: int = 144, workers: int = 2, class_list: bool = True) -> Path:
    """Generate a large set on ``workers`` processes: each writes a share with its own seed (0, 1, ...),
    and the shares are numbered into one folder in the ADEChallengeData2016 layout.

    The images differ from ``write_scenes`` with the same counts (the seeds are per share). Without
    ``class_list`` no objectInfo150.txt is written, so a loader takes ADE20k's 150 classes (the
    reference's head), as the GPU check does; with it, the list is the first share's.
    """
    from concurrent.futures import ProcessPoolExecutor

    out = Path(out)
    workers = max(1, min(workers, train_images))
    jobs = [(out / f"share{k}", k, _share(train_images, workers, k), _share(val_images, workers, k), min_size,
             max_size) for k in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        shares = list(pool.map(_write_chunk, jobs))
    for split, prefix in SPLITS.items():
        for kind in ("images", "annotations"):
            (out / kind / split).mkdir(parents=True, exist_ok=True)
        stems = [(share, path.stem) for share in shares for path in sorted((share / "images" / split).iterdir())]
        for index, (share, stem) in enumerate(stems, start=1):
            for kind, suffix in (("images", ".jpg"), ("annotations", ".png")):
                (share / kind / split / f"{stem}{suffix}").rename(out / kind / split / f"{prefix}_{index:08d}{suffix}")
    if class_list:
        (shares[0] / "objectInfo150.txt").rename(out / "objectInfo150.txt")
    for share in shares:
        shutil.rmtree(share)
    return out


def _share(total: int, parts: int, index: int) -> int:
    """The ``index``-th of ``parts`` near-equal shares of ``total``."""
    return total // parts + (index < total % parts)


def _write_object_info(path: Path, pixel_counts: dict[str, np.ndarray]) -> None:
    """Write the class list in ADE20k's objectInfo150.txt format (tab-separated)."""
    total = sum(counts[1:].sum() for counts in pixel_counts.values())
    lines = ["Idx\tRatio\tTrain\tVal\tName"]
    for k, name in enumerate(CLASS_NAMES, start=1):
        ratio = sum(counts[k] for counts in pixel_counts.values()) / max(total, 1)
        lines.append(f"{k}\t{ratio:.4f}\t{pixel_counts['training'][k]}\t{pixel_counts['validation'][k]}\t{name}")
    path.write_text("\n".join(lines) + "\n")


#: Bump when ``render_scene`` changes, so cached sets are regenerated.
GENERATOR_VERSION = 1


def entry_name(train_images: int = DEFAULT_TRAIN_IMAGES, val_images: int = DEFAULT_VAL_IMAGES, seed: int = 0) -> str:
    """The cache entry of a built-in set (``segkit.cache``): one folder per generator version and size."""
    return f"scenes-v{GENERATOR_VERSION}-seed{seed}-train{train_images}-val{val_images}"


def builtin_scenes(train_images: int = DEFAULT_TRAIN_IMAGES, val_images: int = DEFAULT_VAL_IMAGES,
                   seed: int = 0) -> Path:
    """The built-in set of a given size, generated once into the cache (``segkit.cache``) and reused.

    The cache is ``$SEGKIT_DATA`` or ``~/.cache/segkit``. A set is generated in a temporary folder and
    renamed into place, so concurrent or interrupted runs never see half of one, readable by whoever
    can read the cache; a learner who cannot write a shared cache generates into their own.
    """
    name = entry_name(train_images, val_images, seed)
    return cache.find(name) or cache.make(
        name, lambda out: write_scenes(out, seed=seed, train_images=train_images, val_images=val_images))

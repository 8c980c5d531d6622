"""The ADE20k dataset in its ADEChallengeData2016 layout, and the loaders built on it.

One code path reads the real extracted ADE20k and the built-in scenes (``segkit data scenes``),
which are written in the same layout::

    ROOT/images/{training,validation}/NAME.jpg
    ROOT/annotations/{training,validation}/NAME.png    (8-bit class indices, 0 = unlabelled)
    ROOT/objectInfo150.txt                              (class list; optional, see below)

Without ``objectInfo150.txt`` a root is read as ADE20k: 150 classes with ADE20k's names (the real
ADEChallengeData2016 ships the file; a copy without it, or a GPU check's generated set, is still ADE20k).
That is never silent: ``segkit.train`` says so in its first lines (``class_list_note``), and a label
above 150 fails naming the missing list. Another dataset needs its own list.

Every problem with a folder or a file raises ``DataError`` naming it and saying what to do.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.context
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision import tv_tensors

from segkit.devices import seconds_from_environment
from segkit.errors import DataError
from segkit.processes import descendants
from segkit.transforms import training_labels

#: The splits of ADEChallengeData2016.
SPLITS = ("training", "validation")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_ADE20K = json.loads((Path(__file__).with_name("ade20k150.json")).read_text())
#: ADE20k's 150 class names (annotation value k is ``ADE20K_CLASSES[k - 1]``; 0 is unlabelled), used when a
#: data root has no objectInfo150.txt. Standard palette: ``ADE20K_PALETTE``, as in mmsegmentation.
ADE20K_CLASSES: tuple[str, ...] = tuple(_ADE20K["classes"])
ADE20K_PALETTE: tuple[tuple[int, int, int], ...] = tuple(tuple(color) for color in _ADE20K["palette"])


#: The class list of a data root, in ADE20k's objectInfo150.txt format.
CLASS_LIST = "objectInfo150.txt"


def read_class_names(root: Path) -> tuple[str, ...] | None:
    """Class names from ``objectInfo150.txt`` (tab-separated, name in the last column), if present."""
    path = root / CLASS_LIST
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read class list {path} ({error}); save it as UTF-8 text, or delete it to "
                        f"use ADE20k's 150 classes") from None
    rows = [line.split("\t") for line in text.splitlines()[1:] if line.strip()]
    if not rows or any(len(row) < 2 for row in rows):
        raise DataError(f"{path} is not a tab-separated class list (Idx, ..., Name); fix or delete it")
    return tuple(row[-1].strip() for row in rows)


def check_layout(root: Path, split: str) -> tuple[Path, Path]:
    """The image and annotation folders of a split in the ADEChallengeData2016 layout, or the one error
    that says what is missing."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist; pass the folder that holds images/ and "
                        f"annotations/ (an extracted ADEChallengeData2016, or one written by "
                        f"'segkit data scenes --out DIR')")
    image_dir, label_dir = root / "images" / split, root / "annotations" / split
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            nested = root / "ADEChallengeData2016"
            hint = (f"; did you mean {nested}?" if nested.is_dir() else
                    "; expected images/{training,validation} and annotations/{training,validation}")
            raise DataError(f"data root {root} is not in the ADEChallengeData2016 layout: "
                            f"{folder.relative_to(root)}/ is missing{hint}")
    return image_dir, label_dir


def find_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """List ``(image, annotation)`` pairs of a split, checking the layout and the pairing."""
    image_dir, label_dir = check_layout(root, split)
    images = {p.stem: p for p in image_dir.iterdir()
              if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")}
    labels = {p.stem: p for p in label_dir.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")}
    if not images:
        raise DataError(f"{image_dir} holds no images (.jpg, .jpeg or .png); check the data root")
    unlabelled = sorted(images.keys() - labels.keys())
    if unlabelled:
        raise DataError(f"image {images[unlabelled[0]]} has no annotation {label_dir / unlabelled[0]}.png "
                        f"({len(unlabelled)} images lack one); add the annotations or remove the images")
    orphans = sorted(labels.keys() - images.keys())
    if orphans:
        raise DataError(f"annotation {labels[orphans[0]]} has no image in {image_dir} ({len(orphans)} "
                        f"annotations lack one); add the images or remove the annotations")
    return [(images[stem], labels[stem]) for stem in sorted(images)]


#: What PIL raises for a file over its decompression-bomb limit (the warning when warnings are errors).
_TOO_LARGE = (Image.DecompressionBombError, Image.DecompressionBombWarning)


def too_large(kind: str, path: Path, error: Exception) -> DataError:
    """The error for a file PIL refuses to decode for its size (``Image.MAX_IMAGE_PIXELS``)."""
    size = str(error).split(",")[0].rstrip(".")  # "Image size (N pixels) exceeds limit of M pixels"
    return DataError(f"{kind} {path} is over PIL's decompression-bomb limit ({size}); shrink or remove the file, "
                     f"or raise PIL.Image.MAX_IMAGE_PIXELS if you trust it")


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to uint8 RGB ``(H, W, 3)``: grayscale, RGBA and 16-bit handled."""
    try:
        with Image.open(path) as picture:
            picture.load()
            if picture.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit grayscale: keep the top 8 bits rather than clipping at 255.
                pixels = np.asarray(picture, dtype=np.int64)
                shift = 8 if pixels.max() > 255 else 0
                gray = (pixels >> shift).clip(0, 255).astype(np.uint8)
                return np.repeat(gray[..., None], 3, axis=2)
            return np.array(picture.convert("RGB"))
    except _TOO_LARGE as error:
        raise too_large("image", path, error) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"cannot read image {path} ({error}); replace or remove the file") from None


def read_annotation(path: Path, num_classes: int, fix: str = "fix the file or the class list") -> np.ndarray:
    """Decode an annotation PNG to uint8 class indices ``(H, W)``, checking its values (``fix``: what a
    label beyond the class count tells the user to do)."""
    try:
        with Image.open(path) as picture:
            picture.load()
            if picture.mode not in ("L", "P", "I;16", "I;16B", "I;16L", "I"):
                raise DataError(f"annotation {path} is a {picture.mode} image; annotations are "
                                f"single-channel PNGs of class indices (0 = unlabelled)")
            labels = np.array(picture, dtype=np.int64)
    except _TOO_LARGE as error:
        raise too_large("annotation", path, error) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"cannot read annotation {path} ({error}); replace or remove the file") from None
    if labels.min() < 0:  # a 32-bit ("I") file can hold them; uint8 would wrap them into class indices
        raise DataError(f"annotation {path} holds label {labels.min()}; labels are 0 (unlabelled) to "
                        f"{num_classes}, never negative: fix the file")
    if labels.max() > num_classes:
        raise DataError(f"annotation {path} holds label {labels.max()}, but the dataset has {num_classes} "
                        f"classes (labels 0..{num_classes}); {fix}")
    return labels.astype(np.uint8)


class ADE20k(Dataset):
    """ADE20k (or any dataset in its layout): items are ``(image, mask)``.

    Labels follow the reference: annotation 0 (unlabelled) becomes the ignore index -1 and
    class k becomes k - 1, so masks hold ``-1..num_classes-1``.

    Args:
        root: the folder holding ``images/`` and ``annotations/``.
        split: ``"training"`` or ``"validation"``.
        transform: a paired transform taking ``(tv_tensors.Image, tv_tensors.Mask)``, such as
            ``segkit.transforms.train_transform(512)``; ``None`` gives the full-size pair.
        keep_decoded: keep each pair in memory once decoded (the transform gets a copy, so the items
            are the same); for small sets such as the built-in scenes (docs/benchmarks.md).

    Shape:
        - image: ``(3, H, W)`` uint8.
        - mask: ``(H, W)`` int64 with -1 for ignored pixels.

    Example:
        >>> import tempfile
        >>> from segkit.scenes import write_scenes
        >>> root = write_scenes(tempfile.mkdtemp(), train_images=2, val_images=1)
        >>> image, mask = ADE20k(root, "validation")[0]
        >>> image.dtype, mask.dtype, int(mask.min()) >= -1
        (torch.uint8, torch.int64, True)
    """

    def __init__(self, root: str | Path, split: str = "training",
                 transform: Callable | None = None, keep_decoded: bool = False):
        self.root = Path(root)
        self.decoded: dict[int, tuple[tv_tensors.Image, tv_tensors.Mask]] | None = {} if keep_decoded else None
        self.split = split
        self.pairs = find_pairs(self.root, split)
        names = read_class_names(self.root)
        self.class_list = self.root / CLASS_LIST if names is not None else None  # None: ADE20k's names
        self.class_names = names if names is not None else ADE20K_CLASSES
        self.label_fix = ("fix the file or the class list" if self.class_list else  # for a label beyond the classes
                          f"the root has no {CLASS_LIST}, so ADE20k's 150 classes were assumed: add one listing "
                          f"this dataset's classes")
        if len(self.class_names) > 254:
            raise DataError(f"{self.root} lists {len(self.class_names)} classes; at most 254 fit 8-bit masks")
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """The raw pair: uint8 image ``(3, H, W)`` and uint8 mask ``(H, W)`` with ADE labels."""
        if self.decoded is None:
            return self.read(index)
        if index not in self.decoded:
            self.decoded[index] = self.read(index)
        image, mask = self.decoded[index]
        return image.clone(), mask.clone()  # a transform may work in place: the kept pair stays as read

    def read(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """Decode pair ``index`` from its files."""
        image_path, label_path = self.pairs[index]
        image = read_image(image_path)
        labels = read_annotation(label_path, self.num_classes, self.label_fix)
        if image.shape[:2] != labels.shape:
            raise DataError(f"image {image_path} is {image.shape[1]}x{image.shape[0]} but its annotation "
                            f"{label_path} is {labels.shape[1]}x{labels.shape[0]}; they must match")
        return (tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1)),
                tv_tensors.Mask(torch.from_numpy(labels)))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load(index)
        if self.transform is None:
            return image.as_subclass(torch.Tensor), training_labels(mask)
        return self.transform(image, mask)

    @staticmethod
    def layout_matches(root: Path) -> bool:
        """Whether ``root`` is in the ADEChallengeData2016 layout (its ``images/training`` exists)."""
        return (root / "images" / "training").is_dir()

    @staticmethod
    def check_layout(root: Path) -> None:
        """Raise the one-line ``DataError`` of ``check_layout`` if a split's folders are missing."""
        for split in SPLITS:
            check_layout(root, split)


#: Dataset formats by name: a ``Dataset`` class called as ``(root, split, transform, keep_decoded)``, with
#: ``num_classes`` and ``class_names``, and static ``layout_matches(root)`` and ``check_layout(root)``.
#: ``open_dataset`` detects the format and a run folder records its name; a new format (a Cityscapes
#: layout) is one entry here. The first entry is the default, whose errors a root in no layout gets.
DATASET_FORMATS: dict[str, type[Dataset]] = {"ade20k": ADE20k}


def dataset_format(root: str | Path) -> str:
    """The name of the first format whose layout ``root`` is in; the default (first) format if none is."""
    root = Path(root).expanduser()
    return next((name for name, dataset in DATASET_FORMATS.items() if dataset.layout_matches(root)),
                next(iter(DATASET_FORMATS)))


def check_data_root(root: str | Path) -> str:
    """The format of the data at ``root``, its layout checked (one-line ``DataError`` otherwise)."""
    name = dataset_format(root)
    DATASET_FORMATS[name].check_layout(Path(root).expanduser())
    return name


def open_dataset(root: str | Path, split: str, transform: Callable | None = None, data_format: str | None = None,
                 keep_decoded: bool = False) -> Dataset:
    """One split of the dataset at ``root``, in ``data_format`` (a key of ``DATASET_FORMATS``; None: detected).

    Example:
        >>> import tempfile
        >>> from segkit.scenes import write_scenes
        >>> root = write_scenes(tempfile.mkdtemp(), train_images=2, val_images=1)
        >>> dataset_format(root), len(open_dataset(root, "validation"))
        ('ade20k', 1)
    """
    name = data_format or dataset_format(root)
    if name not in DATASET_FORMATS:
        raise DataError(f"unknown dataset format {name!r}; choose one of {', '.join(DATASET_FORMATS)}")
    return DATASET_FORMATS[name](Path(root).expanduser(), split, transform, keep_decoded)


def class_list_note(dataset: Dataset) -> str | None:
    """One line saying that ``dataset``'s class names are ADE20k's because its root has no class list, or None
    (a dataset that read its list, or a format without a ``class_list`` attribute, names its own classes).

    Example:
        >>> import tempfile
        >>> from segkit.scenes import write_scenes
        >>> root = write_scenes(tempfile.mkdtemp(), train_images=2, val_images=1)
        >>> class_list_note(open_dataset(root, "training")) is None
        True
        >>> (root / "objectInfo150.txt").unlink()
        >>> print(class_list_note(open_dataset(root, "training")).split(": ", 1)[1])  # doctest: +ELLIPSIS
        its labels 1..150 are taken as ADE20k's 150 classes (wall, building, ..., flag); add one if ...
    """
    if getattr(dataset, "class_list", "") is not None:
        return None
    names = dataset.class_names
    return (f"{dataset.root} has no {CLASS_LIST}: its labels 1..{len(names)} are taken as ADE20k's {len(names)} "
            f"classes ({names[0]}, {names[1]}, ..., {names[-1]}); add one if it is another dataset")


def check_files(dataset: Dataset, indices: Iterable[int] | None = None, workers: int = 1) -> None:
    """Read the items of ``dataset`` at ``indices`` (default: all) once, so that a bad file fails now with its
    one-line ``DataError`` instead of when an epoch or an evaluation first reaches it.

    Items go through the dataset's transform: check an evaluation split, whose transform draws no random
    numbers, so that a checked run is the same run. A dataset that keeps decoded pairs keeps them now.
    ``workers`` threads read at once (PIL decodes without holding the GIL); the error of the first bad
    item in ``indices`` order is raised.
    """
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="segkit-check")
    try:
        for _ in pool.map(dataset.__getitem__, range(len(dataset)) if indices is None else indices):
            pass
    finally:
        pool.shutdown(cancel_futures=True)  # after an error, the items not started are not read


def worker_context() -> multiprocessing.context.BaseContext | None:
    """Where DataLoader workers start: a fork server that has imported segkit's data code.

    Forking the training process itself is unsafe when it already runs threads, and a notebook
    kernel always does (its I/O threads; a GPU run's CUDA and pin-memory threads): a lock held by
    another thread at the fork stays locked in the worker forever. The fork server is a clean,
    single-threaded process started once, so workers fork from it safely and start in milliseconds.
    A worker that dies is an error, not a wait: reading its queue fails at once (``ConnectionResetError``),
    or PyTorch's liveness check raises ``RuntimeError`` naming it (tests/library/test_data.py).
    None where there is no fork server (Windows), which then uses the platform's default.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["segkit.data", "segkit.transforms"])
    return context


#: Batches each loader worker prepares ahead (DataLoader's prefetch_factor): what waits in /dev/shm.
PREFETCH_FACTOR = 2
#: Seconds a loader waits for its workers' next batch before it calls them stalled. The slowest batch a
#: worker legitimately makes is the a100 profile's on one GPU: 128 ADE20k images decoded (9.5 ms each,
#: docs/reliability.md) and augmented, a few seconds; 600 s leaves two orders of magnitude for a slow disk
#: or a loaded machine. ``SEGKIT_LOADER_TIMEOUT`` changes it (0: wait forever).
LOADER_TIMEOUT_SECONDS = 600.0
LOADER_TIMEOUT_VARIABLE = "SEGKIT_LOADER_TIMEOUT"


def loader_timeout() -> float:
    """The loaders' stall bound in seconds (``LOADER_TIMEOUT_SECONDS`` unless ``SEGKIT_LOADER_TIMEOUT`` says)."""
    return seconds_from_environment(LOADER_TIMEOUT_VARIABLE, LOADER_TIMEOUT_SECONDS)


def stalled_workers() -> dict[int, str]:
    """The processes below this one that are not running or waiting their turn: stopped, or stuck on a disk."""
    return {pid: entry.state for pid, entry in descendants().items()
            if entry.state in ("stopped", "tracing stop", "disk sleep", "zombie")}


def stalled_worker_error(error: BaseException, stalled: dict[int, str]) -> DataError | None:
    """The one-line error for PyTorch's ``DataLoader timed out``, naming the ``stalled`` worker processes,
    or None for any other error."""
    if not isinstance(error, RuntimeError) or "DataLoader timed out" not in str(error):
        return None
    stuck = [f"{pid} ({state})" for pid, state in stalled.items()]
    who = f"worker process {', '.join(stuck)}" if stuck else "its worker processes"
    return DataError(f"the data loader waited {loader_timeout():.0f} s for a batch from {who}; check the data folder's "
                     f"disk (a stalled network mount) and free memory, then run the same command again to resume "
                     f"from the last checkpoint")


def sample_bytes(image_size: int) -> int:
    """Bytes of one training sample as a worker hands it over: a uint8 image (3, S, S), a packed mask (S, S)."""
    return 3 * image_size**2 + image_size**2


def pack_masks(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate a batch with its masks back in ADE20k's annotation values: one byte a pixel instead of eight.

    The masks' int64 is 8 of every 11 bytes a batch moves (shared memory, pinned memory, the copy to the
    device); ``unpack_masks`` gives the training labels back where the batch lands.

    Example:
        >>> images, packed = pack_masks([(torch.zeros(3, 1, 2, dtype=torch.uint8), torch.tensor([[-1, 149]]))])
        >>> packed.dtype, packed.tolist(), unpack_masks((images, packed))[1].tolist()
        (torch.uint8, [[[0, 150]]], [[[-1, 149]]])
    """
    images = torch.stack([image for image, _ in samples])
    masks = torch.stack([mask for _, mask in samples])
    return images, (masks + 1).to(torch.uint8)  # -1 (ignored) -> 0; the class list is at most 254 long


def unpack_masks(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``pack_masks``' batch with int64 training labels, -1 = ignored (run on the device the batch is on)."""
    images, packed = batch
    return images, training_labels(packed)


def build_loaders(train_set: ADE20k, val_set: ADE20k, device_batch: int, seed: int, *, num_workers: int = 0,
                  pin_memory: bool = False, world_size: int = 1, rank: int = 0,
                  eval_batch: int | None = None, packed: bool = False) -> tuple[DataLoader, DataLoader]:
    """Shuffled, drop-last training loader and an in-order evaluation loader, split over processes.

    The evaluation loader's batch is ``eval_batch`` (default: ``device_batch``): it changes the speed of
    an evaluation and its ``val_loss`` (a mean over batches, Dice taken per batch), not mIoU or accuracy.

    Each of ``world_size`` processes (one per GPU) gets its own share of every epoch through a
    ``DistributedSampler`` seeded by ``seed``; with one process it is the whole set, shuffled.
    Workers start from a fork server (``worker_context``), a worker that dies is an error, and workers that
    produce no batch for ``loader_timeout()`` seconds (stopped, or stuck on a disk) are one too.
    ``packed`` batches carry their masks as ``pack_masks`` makes them (training undoes it on the device).
    """
    world = world_size
    common = {"batch_size": device_batch, "num_workers": num_workers, "pin_memory": pin_memory,
              "persistent_workers": num_workers > 0, "prefetch_factor": PREFETCH_FACTOR if num_workers > 0 else None,
              "timeout": loader_timeout() if num_workers > 0 else 0,
              "multiprocessing_context": worker_context() if num_workers > 0 else None,
              "collate_fn": pack_masks if packed else None}
    train_loader = DataLoader(
        train_set, drop_last=True, **common,
        sampler=DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                   drop_last=True))
    val_loader = DataLoader(
        val_set, **{**common, "batch_size": eval_batch or device_batch},
        sampler=DistributedSampler(val_set, num_replicas=world, rank=rank, shuffle=False))
    return train_loader, val_loader

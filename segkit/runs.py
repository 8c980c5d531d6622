"""Run folders: where a training run keeps its checkpoint, its weights and its ``metrics.json``.

A run folder ``SAVE_FOLDER/RUN_NAME/`` holds::

    metrics.json            what the run is (recipe, profile, data, seed, versions), its status and
                            its history: one entry per evaluation (epoch, step, wall time, mIoU,
                            pixel accuracy, train and validation losses, throughput)
    checkpoints/latest.pt   the full training state after the last evaluation (resume point)
    model.pt                the evaluated weights (EMA weights where the recipe has EMA), at the end

Everything is written atomically (a temporary file in the same folder, then ``os.replace``),
so a run killed at any moment leaves either the old file or the new one, never a torn one.
This module is plain Python: notebooks, plots and widgets read runs through it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import os
import platform
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypedDict

from segkit.errors import ConfigError, RunError
from segkit.profiles import Profile
from segkit.recipes import Recipe

if TYPE_CHECKING:
    from segkit.spec import RunSpec

try:
    import fcntl
except ImportError:  # Windows: runs are not locked
    fcntl = None

METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = Path("checkpoints") / "latest.pt"
WEIGHTS_FILE = "model.pt"
_UMASK = os.umask(0o022)
os.umask(_UMASK)
#: Set to 1 to train without the run folder's lock (``RunLock``), on a file system that has no locks.
NO_LOCK_VARIABLE = "SEGKIT_NO_RUN_LOCK"
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_run_name(name: str) -> str:
    """A run name is a plain folder name: letters, digits, '.', '_' and '-'."""
    if not isinstance(name, str) or not _RUN_NAME.match(name):
        raise ConfigError(f"run name {name!r} must be 1-100 letters, digits, '.', '_' or '-' "
                          f"(it names a folder), starting with a letter or digit")
    return name


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``write(file)`` so that it is replaced whole or not at all.

    A full disk or any other OS error removes the partial temporary file, leaves the previous
    ``path`` untouched and raises ``RunError`` naming the file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        os_error = _os_error_behind(error)
        if os_error is None:
            raise
        full = os_error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        reason = "the disk is full" if full else (os_error.strerror or str(os_error))
        raise RunError(f"could not write {path}: {reason}; the previous version of the file is intact, "
                       f"free space and run the same command again to continue") from None


def _os_error_behind(error: BaseException | None) -> OSError | None:
    """The OSError that caused ``error``, if any (torch.save turns a failed write into a RuntimeError)."""
    while error is not None:
        if isinstance(error, OSError):
            return error
        error = error.__cause__ or error.__context__
    return None


def write_json(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=1, allow_nan=False).encode()
    atomic_write(path, lambda file: file.write(text))


def prepare_run_folder(folder: Path) -> Path:
    """Create ``folder`` (and parents) and prove it writable, or raise ``RunError`` saying so."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise RunError(f"cannot write run folder {folder} ({error.strerror or error}); pass a writable "
                       f"--save-folder") from None
    return folder


def remove_stale_temporaries(folder: Path) -> None:
    """Delete temporary files that a killed ``atomic_write`` left behind in a run folder."""
    for stale in [*folder.glob(".*.tmp"), *folder.glob("checkpoints/.*.tmp")]:
        with contextlib.suppress(OSError):
            stale.unlink()


class RunLock:
    """Hold an exclusive lock on a run folder while a process trains it.

    A second process training the same run gets a ``RunError`` instead of interleaving its
    checkpoints with the first. The operating system releases the lock when the holder exits,
    however it exits (a killed run leaves no stale lock). Only one process of a multi-GPU run
    takes it (``enabled``). No-op where ``fcntl`` is missing, and where ``SEGKIT_NO_RUN_LOCK=1``:
    the way to train on a file system without locks (an NFS mount without its lock daemon, a
    Lustre mount without ``flock``), which is otherwise refused in one line.
    """

    def __init__(self, folder: Path, enabled: bool = True):
        self.path = folder / ".lock"
        self.enabled = enabled and fcntl is not None and os.environ.get(NO_LOCK_VARIABLE) != "1"
        self.file = None

    def __enter__(self) -> RunLock:
        if not self.enabled:
            return self
        self.file = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise RunError(f"run folder {self.path.parent} is being trained by another process; wait for it "
                           f"to finish, or choose another --run-name") from None
        except OSError as error:  # ENOLCK, ENOSYS, EOPNOTSUPP: the file system has no locks
            self.file.close()
            raise RunError(f"cannot lock run folder {self.path.parent}: its file system does not support locks "
                           f"({error.strerror or error}); put --save-folder on a local disk, or set "
                           f"{NO_LOCK_VARIABLE}=1 to train without the lock (then never train one run twice at "
                           f"once)") from None
        return self

    def __exit__(self, *exc_info) -> None:
        if self.file is not None:
            self.file.close()


class Evaluation(TypedDict, total=False):
    """One entry of a run's history: written after every evaluation (``segkit.engine.RunRecorder``)."""

    epoch: float  # epochs trained, fractional
    step: int  # optimizer steps trained
    wall_time: float  # seconds of training so far (evaluations included), over all sessions of the run
    miou: float  # validation mIoU, percent (of the EMA's weights when the recipe has EMA)
    miou_raw: float  # with EMA, when asked for: the validation mIoU of the weights SGD trains
    pixel_accuracy: float  # validation pixel accuracy, percent
    val_loss: float  # the training objective on the validation set
    train_loss: float  # mean training loss since the previous evaluation (train_ce, train_dice: its parts)
    images_per_second: float | None  # training throughput since the previous evaluation


class DataInfo(TypedDict):
    """What a run trained and evaluated on."""

    root: str  # the data folder, resolved
    format: str  # a key of segkit.data.DATASET_FORMATS
    train_images: int
    val_images: int
    num_classes: int
    class_names: list[str]


class RunInfo(TypedDict, total=False):
    """What ``metrics.json`` holds besides the history (``run_record`` builds it)."""

    run_name: str
    status: str  # starting, running, finished, failed or interrupted
    error: str  # one line, when the run failed or was interrupted
    recipe: dict[str, Any]  # the Recipe at the reference scale, as a dict
    plan: dict[str, Any]  # the Recipe scaled to the profile: what actually ran
    profile: dict[str, Any]  # the Profile, as a dict
    data: DataInfo
    seed: int
    duration: str  # the run's length, e.g. "16ep"
    world_size: int  # processes (GPUs) that trained it
    versions: dict[str, str]  # python, segkit, mosaicml, torch, torchvision, numpy
    command: str  # the command line that started it
    per_class_iou: dict[str, float | None]  # at the last evaluation, over the whole validation set
    batchnorm: str  # "synchronized over N processes" or "per process": what the BatchNorm statistics covered


STATUSES = ("starting", "running", "finished", "failed", "interrupted")


def run_record(run_name: str, spec: RunSpec, plan: Recipe, data: DataInfo, duration: str, world_size: int,
               batchnorm: str) -> RunInfo:
    """The record of a run about to start: what it is, from the spec and what the engine found."""
    return RunInfo(run_name=run_name, status="starting", recipe=dataclasses.asdict(spec.recipe),
                   plan=dataclasses.asdict(plan), profile=dataclasses.asdict(spec.profile), data=data,
                   seed=spec.seed, duration=duration, world_size=world_size, batchnorm=batchnorm,
                   versions=package_versions(), command=" ".join(sys.argv))


@dataclass
class Run:
    """A run folder as data: its description, status and evaluation history.

    Attributes:
        folder: the run folder.
        info: what ``metrics.json`` holds besides the history (recipe, profile, data, seed, ...).
        history: one dict per evaluation, oldest first.
    """

    folder: Path
    info: RunInfo = field(default_factory=dict)
    history: list[Evaluation] = field(default_factory=list)

    @classmethod
    def load(cls, folder: str | Path) -> Run:
        """Read a run folder (or its ``metrics.json``)."""
        folder = Path(folder)
        path = folder if folder.name == METRICS_FILE else folder / METRICS_FILE
        if not path.is_file():
            raise RunError(f"{path.parent} is not a run folder: it has no {METRICS_FILE}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"it holds a {type(data).__name__}, not an object")
        except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise RunError(f"{path} is not valid JSON ({error}); delete it and run the same training command "
                           f"again: it is rebuilt from {CHECKPOINT_FILE} (without one the run starts over)") from None
        history = data.pop("history", [])
        return cls(folder=path.parent, info=data, history=history)

    def dataset(self, split: str, transform: Any = None, data: str | Path | None = None) -> Any:
        """A split of the run's data (its recorded root and format), or of ``data`` (format detected)."""
        from segkit.data import open_dataset

        if data is not None:
            return open_dataset(data, split, transform)
        return open_dataset(self.info["data"]["root"], split, transform, self.info["data"].get("format"))

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def recipe(self) -> str:
        return self.info.get("recipe", {}).get("name", "?")

    @property
    def status(self) -> str:
        return self.info.get("status", "unknown")

    @property
    def final(self) -> Evaluation:
        """The last evaluation, or an empty dict before the first one."""
        return self.history[-1] if self.history else {}

    def series(self, key: str) -> tuple[list[float], list[float], list[float]]:
        """``(epochs, wall_times, values)`` of one history field, for plotting."""
        return history_series(self.history, key)

    def write(self) -> None:
        write_json(self.folder / METRICS_FILE, {**self.info, "history": self.history})

    def set_status(self, status: str, error: str | None = None) -> None:
        """Record how the run stands (one of ``STATUSES``), with the one-line error of a run that stopped."""
        if status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        self.info["status"] = status
        if error is not None:
            self.info["error"] = error
        self.write()


def history_series(history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float], list[float]]:
    """``(epochs, wall_times, values)`` of the history entries that have ``key``.

    Example:
        >>> history_series([{"epoch": 1, "wall_time": 5.0, "miou": 20.0}, {"epoch": 2, "wall_time": 9.0}], "miou")
        ([1], [5.0], [20.0])
    """
    rows = [row for row in history if row.get(key) is not None]
    return [row["epoch"] for row in rows], [row["wall_time"] for row in rows], [row[key] for row in rows]


def find_runs(save_folder: str | Path) -> dict[str, Run]:
    """Every run folder directly under ``save_folder``, by name (unreadable ones are skipped)."""
    runs = {}
    for metrics in sorted(Path(save_folder).glob(f"*/{METRICS_FILE}")):
        with contextlib.suppress(RunError):
            runs[metrics.parent.name] = Run.load(metrics.parent)
    return runs


@dataclass(frozen=True)
class RunResult:
    """What ``train`` returns: the run folder and its final numbers."""

    folder: Path
    run: Run
    miou: float
    pixel_accuracy: float
    wall_time: float
    resumed: bool

    @classmethod
    def of(cls, run: Run, resumed: bool) -> RunResult:
        """The result a run folder records (NaN for numbers before its first evaluation)."""
        final = run.final
        return cls(folder=run.folder, run=run, miou=final.get("miou", math.nan),
                   pixel_accuracy=final.get("pixel_accuracy", math.nan),
                   wall_time=final.get("wall_time", math.nan), resumed=resumed)


def open_run(folder: Path, info: dict[str, Any]) -> tuple[Run, bool]:
    """The run to write in ``folder``, and whether it resumes from a checkpoint.

    An existing folder must hold the same run (``check_same_run``). Its history continues only
    from a checkpoint: a run killed before its first checkpoint starts over. A finished run (with
    its weights saved) is returned as it is, to be reported without building a trainer.
    """
    resuming = (folder / CHECKPOINT_FILE).exists()
    run = Run(folder=folder, info=info)
    if (folder / METRICS_FILE).exists():
        previous = Run.load(folder)
        check_same_run(previous.info, info, folder)
        if resuming and previous.status == "finished" and (folder / WEIGHTS_FILE).is_file():
            return previous, True
        if resuming:
            run.history = previous.history
    return run, resuming


def field_defaults(kind: type) -> dict[str, Any]:
    """A dataclass's fields that have a default, with it."""
    return {f.name: f.default for f in dataclasses.fields(kind) if f.default is not dataclasses.MISSING}


#: What an older run folder's record lacks takes its field's default: a field is added to Recipe or Profile
#: with the default that keeps what runs did before it (docs/architecture.md), so an older run still resumes.
ADDED_FIELDS = {"recipe": field_defaults(Recipe), "profile": field_defaults(Profile)}


def check_same_run(previous: dict[str, Any], current: dict[str, Any], folder: Path) -> None:
    """A run folder is only resumed by the same run: same recipe, profile, data, seed and length."""
    def short(value: Any) -> Any:
        return value.get("name") if isinstance(value, dict) else value

    for key in ("recipe", "profile", "seed", "duration"):
        before, now = previous.get(key), current.get(key)
        if isinstance(before, dict) and isinstance(now, dict):
            before, now = {**ADDED_FIELDS.get(key, {}), **before}, {**ADDED_FIELDS.get(key, {}), **now}
            fields = [name for name in sorted(before.keys() | now.keys()) if before.get(name) != now.get(name)]
        else:
            fields = [] if before == now else [key]
        if fields:
            detail = "" if fields == [key] else ": " + ", ".join(
                f"{name} {before.get(name)!r} -> {now.get(name)!r}" for name in fields)
            raise RunError(
                f"run folder {folder} holds a run with another {key} ({short(before)!r}; "
                f"this command asks for {short(now)!r}{detail}); choose another --run-name, "
                f"or delete the folder to start over")
    if previous.get("data", {}).get("root") != current["data"]["root"]:
        raise RunError(f"run folder {folder} was trained on {previous.get('data', {}).get('root')}, not "
                       f"{current['data']['root']}; choose another --run-name")


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("segkit", "mosaicml", "torch", "torchvision", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            versions[package] = version(package)
    return versions

"""The engine: segkit's runs on MosaicML Composer. This module, ``segkit.algorithms`` and ``segkit.probes``
are the only ones that import Composer; the rest of segkit is plain PyTorch and plain Python.

``train(spec)`` reads top to bottom, like torchvision's reference training script:

    build     the processes (join_processes), the data (build_data), the plan: the recipe scaled to the
              profile at the loader's steps per epoch (segkit.recipes.scale)
    resume?   the run folder's record (segkit.runs.run_record), new or resumed from checkpoints/latest.pt
              (open_shared_run, segkit.runs.open_run)
    fit       model, loss, optimizer, schedule and algorithms in a Composer Trainer (build_trainer), then
              fit, which records how a run that does not finish ended
    record    metrics.json after every evaluation (RunRecorder), model.pt and "finished" at the end
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import secrets
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from composer import Callback, ComposerModel, State, Trainer
from composer.core import DataSpec, Time
from composer.loggers import Logger
from composer.optim import CosineAnnealingScheduler, DecoupledSGDW
from composer.utils import dist, reproducibility
from torchmetrics import Metric

from segkit import checkpoints, recipes
from segkit.algorithms import build_algorithms, evaluated_weights
from segkit.data import (
    PREFETCH_FACTOR,
    build_loaders,
    check_files,
    class_list_note,
    dataset_format,
    open_dataset,
    sample_bytes,
    stalled_worker_error,
    stalled_workers,
    unpack_masks,
)
from segkit.devices import (
    check_available,
    check_microbatch,
    check_shared_memory,
    configure_backends,
    pins_memory,
    seconds_from_environment,
)
from segkit.errors import ConfigError, DataError, RunError, SegkitError
from segkit.losses import SegmentationLoss, loss_for
from segkit.metrics import MeanIoU, PixelAccuracy, iou_per_class
from segkit.model import apply_surgery, build_model
from segkit.pretraining import backbone_init
from segkit.probes import Probe, RawWeightsProbe
from segkit.profiles import Profile
from segkit.recipes import Recipe
from segkit.runs import (
    CHECKPOINT_FILE,
    WEIGHTS_FILE,
    DataInfo,
    Run,
    RunLock,
    RunResult,
    atomic_write,
    check_run_name,
    open_run,
    prepare_run_folder,
    remove_stale_temporaries,
    run_record,
)
from segkit.spec import DEFAULT_SAVE_FOLDER, RunSpec
from segkit.transforms import eval_transform, normalize, train_transform

#: Seconds a collective waits for the other processes (Composer's default): a node lost without a word (its
#: machine off, its network gone) fails the others then; one whose process died closes its sockets, and they
#: fail within seconds. ``SEGKIT_DIST_TIMEOUT`` changes it.
DIST_TIMEOUT_SECONDS = 300.0
DIST_TIMEOUT_VARIABLE = "SEGKIT_DIST_TIMEOUT"
#: Words of torch's gloo and NCCL errors when another process of the run is gone.
_LOST_PEER_SIGNS = ("Connection closed by peer", "Connection reset by peer", "Timed out", "timed out", "NCCL", "gloo")


def dist_timeout() -> float:
    """The distributed timeout in seconds (``DIST_TIMEOUT_SECONDS`` unless ``SEGKIT_DIST_TIMEOUT`` says)."""
    return seconds_from_environment(DIST_TIMEOUT_VARIABLE, DIST_TIMEOUT_SECONDS)


def lost_peer_error(error: BaseException) -> RunError | None:
    """The one-line error for a collective that failed because another process of the run is gone, or None."""
    world = dist.get_world_size()
    # NCCL's failures are DistErrors; gloo's lost connections come as plain RuntimeErrors, told by their words.
    told = isinstance(error, torch.distributed.DistError) or (
        isinstance(error, RuntimeError) and any(sign in str(error) for sign in _LOST_PEER_SIGNS))
    if world < 2 or not told:
        return None
    detail = str(error).strip().splitlines()[0].split("] ", 1)[-1]  # without gloo's source path
    return RunError(f"lost contact with another process of this {world}-process run ({detail[:160]}); a process "
                    f"stops within {dist_timeout():.0f} s of losing one; run the same command on every node again "
                    f"to resume from the last checkpoint")

# Composer notices that say nothing to a segkit user (all checked against composer 0.32.1).
_QUIET = [
    r".*No optimizer was specified.*",
    r".*The `compute_training_metrics`.*",
    r".*Negative label indices.*",
    r".*is not a registered metric.*",
    r"Cannot split tensor of length .*",  # a last evaluation batch smaller than the others
]


class SegmentationModel(ComposerModel):
    """The Composer view of a segmentation network: forward, loss and evaluation metrics.

    Batches are ``(images, masks)`` with uint8 (or MixUp's float) images on the 0-255 scale;
    normalization happens here, on the device, as in the reference.
    """

    def __init__(self, module: torch.nn.Module, num_classes: int, loss: SegmentationLoss):
        super().__init__()
        self.module = module
        self.loss_fn = loss
        self.val_metrics = {
            "miou": MeanIoU(num_classes),
            "pixel_accuracy": PixelAccuracy(num_classes),
            "val_loss": ValidationLoss(loss),
        }

    def forward(self, batch: tuple[torch.Tensor, Any]) -> torch.Tensor:
        images, _ = batch
        return self.module(normalize(images))

    def loss(self, outputs: torch.Tensor, batch: tuple[torch.Tensor, Any]) -> dict[str, torch.Tensor]:
        return self.loss_fn(outputs, batch[1])

    def eval_forward(self, batch, outputs: torch.Tensor | None = None) -> torch.Tensor:
        return outputs if outputs is not None else self.forward(batch)

    def get_metrics(self, is_train: bool = False) -> dict:
        return {} if is_train else self.val_metrics

    def update_metric(self, batch, outputs: torch.Tensor, metric) -> None:
        metric.update(outputs, batch[1])


class ValidationLoss(Metric):
    """The training objective averaged over evaluation batches."""

    full_state_update = False

    def __init__(self, loss: SegmentationLoss):
        super().__init__()
        self.loss_fn = loss
        self.add_state("total", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("batches", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        self.total += self.loss_fn(logits, target)["total"].double()
        self.batches += 1

    def compute(self) -> torch.Tensor:
        return self.total / self.batches.clamp_min(1)


class RunRecorder(Callback):
    """Keeps the run folder: history, checkpoint and metrics.json after every evaluation.

    After each evaluation round it appends a history entry, writes ``checkpoints/latest.pt``
    atomically, then ``metrics.json`` (so the history on disk never runs ahead of the
    checkpoint). Its own state (history, training wall time) travels inside the checkpoint, so
    a resumed run continues the same history. A non-finite loss stops training with a
    ``RunError`` before anything is saved over the last good checkpoint.

    ``probes`` measure more at each evaluation (``segkit.probes``, such as the raw weights' mIoU):
    each one's numbers join the history entry, and their time is left out of the run's wall time,
    so the run's cost stays comparable with a run without them.
    """

    def __init__(self, run: Run, print_progress: bool = True,
                 on_progress: Callable[[str, dict[str, Any]], None] | None = None,
                 probes: Sequence[Probe] = ()):
        self.run = run
        self.probes = tuple(probes)
        self._uncounted_seconds = 0.0  # the probes' time, this session
        self.print_progress = print_progress
        self.on_progress = on_progress  # plain-Python observer: ("batch" | "eval", data)
        self.wall_time = 0.0  # seconds of fit() so far, over all sessions of the run
        self._session_start = 0.0
        self._wall_time_at_session_start = 0.0
        self._losses: dict[str, float] = {}
        self._loss_batches = 0
        self._train_seconds = 0.0
        self._train_samples = 0
        self._interval_start = 0.0

    # --- state carried in checkpoints ---
    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.run.history), "wall_time": self._now()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run.history = list(state["history"])
        self.wall_time = float(state["wall_time"])

    # --- events ---
    def fit_start(self, state: State, logger: Logger) -> None:
        self._session_start = time.monotonic()
        self._uncounted_seconds = 0.0
        self._wall_time_at_session_start = self.wall_time
        self._interval_start = time.monotonic()
        if dist.get_global_rank() == 0:
            self.run.set_status("running")

    def batch_end(self, state: State, logger: Logger) -> None:
        losses = state.total_loss_dict
        total = losses.get("loss/train/total", math.nan)
        if not math.isfinite(total):
            raise RunError(
                f"the training loss became {total} at step {int(state.timestamp.batch)} (epoch "
                f"{int(state.timestamp.epoch) + 1}); the last good checkpoint is kept in "
                f"{self.run.folder / CHECKPOINT_FILE}; lower the learning rate or check the data")
        for key, value in losses.items():
            name = "train_" + key.removeprefix("loss/train/").replace("total", "loss")
            self._losses[name] = self._losses.get(name, 0.0) + value
        self._loss_batches += 1
        self._train_samples += int(state.timestamp.sample - state.previous_timestamp.sample)
        if self.on_progress is not None and dist.get_global_rank() == 0:
            self.on_progress("batch", {"step": int(state.timestamp.batch), "epoch": int(state.timestamp.epoch),
                                       "wall_time": self._now(), "train_loss": total})

    def eval_before_all(self, state: State, logger: Logger) -> None:
        self._train_seconds += time.monotonic() - self._interval_start

    def eval_start(self, state: State, logger: Logger) -> None:
        # Composer evaluates the model without DDP's buffer broadcast, so each process would use its own
        # BatchNorm statistics (they differ by the last step's batch). Rank 0's are the ones model.pt
        # keeps: every process evaluates with them, so the recorded mIoU is the saved weights' mIoU.
        if dist.get_world_size() > 1:
            for buffer in state.model.buffers():
                dist.broadcast(buffer, src=0)

    def eval_after_all(self, state: State, logger: Logger) -> None:
        metrics = state.eval_metrics["eval"]
        entry = {
            "epoch": round(state.timestamp.epoch.value + state.timestamp.batch_in_epoch.value
                           / max(1, state.dataloader_len.value if state.dataloader_len else 1), 4),
            "step": int(state.timestamp.batch),
            "wall_time": round(self._now(), 3),
            "miou": round(float(metrics["miou"].compute()), 4),
            "pixel_accuracy": round(float(metrics["pixel_accuracy"].compute()), 4),
            "val_loss": round(float(metrics["val_loss"].compute()), 5),
            **{key: round(total / max(1, self._loss_batches), 5) for key, total in self._losses.items()},
            "images_per_second": round(self._train_samples / self._train_seconds, 2)
            if self._train_seconds > 0 else None,
        }
        for probe in self.probes:
            started = time.monotonic()
            entry.update(probe.measure(state))
            self._uncounted_seconds += time.monotonic() - started
        self.run.history.append(entry)
        # The matrix compute() saw, summed over every process: per-class IoU of the whole validation set.
        per_class = iou_per_class(metrics["miou"].computed_confusion).tolist()
        self.run.info["per_class_iou"] = dict(zip(
            self.run.info["data"]["class_names"], [None if math.isnan(v) else round(v, 3) for v in per_class],
            strict=True))
        save_checkpoint(state, self.run.folder / CHECKPOINT_FILE)
        if dist.get_global_rank() == 0:
            self.run.write()
            if self.print_progress:
                print(progress_line(entry, self.run.info["duration"]), flush=True)
            if self.on_progress is not None:
                self.on_progress("eval", entry)
        self._losses, self._loss_batches = {}, 0
        self._train_seconds, self._train_samples = 0.0, 0
        self._interval_start = time.monotonic()

    def _now(self) -> float:
        if not self._session_start:
            return self.wall_time
        return (self._wall_time_at_session_start + time.monotonic() - self._session_start
                - self._uncounted_seconds)


def progress_line(entry: dict[str, Any], duration: str) -> str:
    """One line per evaluation, for logs and papermill outputs."""
    return (f"epoch {entry['epoch']:g} of {duration}  step {entry['step']}  mIoU {entry['miou']:.2f}  "
            f"pixel acc {entry['pixel_accuracy']:.2f}  train loss {entry.get('train_loss', math.nan):.4f}  "
            f"({entry['wall_time']:.0f} s)")


def train(
    spec: RunSpec,
    *,
    save_folder: str | Path = DEFAULT_SAVE_FOLDER,
    run_name: str | None = None,
    on_progress: Callable[[str, dict[str, Any]], None] | None = None,
    callbacks: Sequence[Callback] = (),
    print_progress: bool = True,
    progress_bar: bool | None = None,
    evaluate_raw_weights: bool = False,
    check_data: bool | None = None,
) -> RunResult:
    """Train ``spec`` and keep its run folder; resume the run if the folder holds it.

    Args:
        spec: the run (``segkit.run_spec("mild", profile="tiny")``): recipe, profile, data, seed, duration, weights.
        save_folder: where run folders go.
        run_name: folder name under ``save_folder``; defaults to ``spec.run_name``. Running again with the
            same name resumes from the last checkpoint.
        on_progress: called as ``on_progress("batch", {...})`` after every step and ``on_progress("eval", entry)``
            after every evaluation (live plots use this).
        callbacks: extra Composer callbacks.
        print_progress: print one line per evaluation.
        progress_bar: Composer's progress bar; by default shown when stdout is a terminal.
        evaluate_raw_weights: with EMA, also evaluate the raw weights at every evaluation (``miou_raw`` in the
            history; its time is not counted in the run's wall time).
        check_data: read every validation file before anything is written, so that a bad one fails at the start
            rather than at the first evaluation; None (default): on GPU profiles (``gpu``, ``a100``), whose first
            evaluation comes after an epoch of ADE20k. Cost: docs/reliability.md.

    Returns:
        A ``RunResult`` with the run folder and the final mIoU.

    Raises:
        ConfigError, DataError, WeightsError, RunError: bad input, with a message saying what to do.
    """
    if not isinstance(spec, RunSpec):
        raise ConfigError(f"train takes a RunSpec, got {spec!r}; build one with segkit.run_spec({spec!r}, "
                          f"profile=..., data=...)")
    run_name = check_run_name(run_name or spec.run_name)
    say = print if print_progress and dist.get_global_rank() == 0 else lambda *args, **kwargs: None
    world = join_processes(spec.profile)
    data = build_data(spec, run_name, world, check_data, say)
    plan = recipes.scale(spec.recipe, spec.profile, steps_per_epoch=len(data.train_loader))
    if spec.profile.device == "gpu":  # a memory layout, not an algorithm: every GPU run is faster with it
        plan = dataclasses.replace(plan, channels_last=True)
    max_duration = Time.from_timestring(spec.duration or f"{plan.epochs}ep")

    folder = prepare_run_folder(Path(save_folder).expanduser() / run_name)
    with RunLock(folder, enabled=dist.get_global_rank() == 0):
        if dist.get_global_rank() == 0:
            remove_stale_temporaries(folder)
        batchnorm = f"synchronized over {world} processes" if syncs_batchnorm(spec.profile, world) else "per process"
        record = run_record(run_name, spec, plan, data.description, str(max_duration), world, batchnorm)
        run, resuming = open_shared_run(folder, record)
        if run.status == "finished":
            say(f"run {run_name} has already finished; nothing to train", flush=True)
            return RunResult.of(run, resumed=True)
        recorder = RunRecorder(run, print_progress, on_progress,
                               [RawWeightsProbe(data.num_classes)] if evaluate_raw_weights else [])
        with build_trainer(spec, plan, data, max_duration, folder, resuming, [recorder, *callbacks],
                           progress_bar) as trainer:
            fit(trainer, run)
        if dist.get_global_rank() == 0:
            save_weights(trainer, folder / WEIGHTS_FILE)
            run.set_status("finished")
    return RunResult.of(run, resumed=resuming)


def join_processes(profile: Profile) -> int:
    """Check the profile's device and batch against this process's world, join the others; the world size."""
    try:
        check_available(profile.device)
    except ConfigError as error:
        raise ConfigError(f"profile {profile.name!r} {error}") from None
    configure_backends(profile.device)
    world = dist.get_world_size()
    if syncs_batchnorm(profile, world) and profile.device != "gpu":  # torch's SyncBatchNorm is GPU-only
        raise ConfigError(f"profile {profile.name!r} synchronizes BatchNorm, which runs on GPUs only; set its "
                          f"sync_batchnorm to False to train on {world} CPU processes")
    if profile.global_batch_size % world:
        raise ConfigError(f"the global batch {profile.global_batch_size} does not split over {world} processes")
    if world > 1:  # now, so that every process takes the run folder's decisions together (open_shared_run)
        dist.initialize_dist(profile.device, timeout=dist_timeout())
    return world


def syncs_batchnorm(profile: Profile, world: int) -> bool:
    """Whether BatchNorm's statistics cover every process of the run (else each process's own batch)."""
    return profile.sync_batchnorm and world > 1


@dataclasses.dataclass
class RunData:
    """A run's data: the two splits, their loaders and the evaluation microbatch."""

    train_set: Any
    val_set: Any
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader
    microbatch: int
    description: DataInfo  # what the run record keeps of it

    @property
    def num_classes(self) -> int:
        return self.train_set.num_classes


def build_data(spec: RunSpec, run_name: str, world: int, check_data: bool | None,
               say: Callable[..., None]) -> RunData:
    """The run's datasets and loaders, this process's share; the validation files read first when asked."""
    profile, rank = spec.profile, dist.get_global_rank()
    device_batch = profile.global_batch_size // world
    root = spec.data_folder()
    # The built-in sets are a few hundred small images: kept decoded in the one process that loads them,
    # every epoch after the first skips decoding, with the same results (docs/benchmarks.md).
    keep_decoded = spec.data == "scenes" and profile.num_workers == 0
    data_format = dataset_format(root)
    train_set = open_dataset(root, "training", train_transform(profile.image_size), data_format, keep_decoded)
    val_set = open_dataset(root, "validation", eval_transform(profile.image_size), data_format, keep_decoded)
    if profile.device == "gpu" if check_data is None else check_data:
        started = time.monotonic()
        check_shared(val_set, workers=profile.num_workers)
        say(f"checked the {len(val_set)} validation files in {time.monotonic() - started:.1f} s", flush=True)
    microbatch = check_microbatch(profile.microbatch_size, device_batch, train_set.num_classes, profile.image_size)
    size = f"auto, from {microbatch}" if profile.microbatch_size == "auto" else microbatch
    say(f"{run_name}: {world} process(es) on {profile.device}, global batch {profile.global_batch_size} = "
        f"{device_batch} per process, in microbatches of {size}", flush=True)
    if note := class_list_note(train_set):
        say(note, flush=True)
    check_shared_memory(profile.num_workers, PREFETCH_FACTOR, device_batch * sample_bytes(profile.image_size))
    train_loader, val_loader = build_loaders(
        train_set, val_set, device_batch, spec.seed, num_workers=profile.num_workers,
        pin_memory=pins_memory(profile.device), world_size=world, rank=rank, eval_batch=microbatch, packed=True)
    if len(train_loader) == 0:
        raise ConfigError(f"{root} has {len(train_set)} training images, fewer than one batch of "
                          f"{device_batch} per device; add images or use a smaller profile")
    description = DataInfo(root=str(root.resolve()), format=data_format, train_images=len(train_set),
                           val_images=len(val_set), num_classes=train_set.num_classes,
                           class_names=list(train_set.class_names))
    return RunData(train_set, val_set, train_loader, val_loader, microbatch, description)


@contextlib.contextmanager
def build_trainer(spec: RunSpec, plan: Recipe, data: RunData, max_duration: Time, folder: Path, resuming: bool,
                  callbacks: Sequence[Callback], progress_bar: bool | None) -> Iterator[Trainer]:
    """The model, loss, optimizer and schedule of ``plan`` in a Composer ``Trainer``, loaded from the run
    folder's checkpoint when it resumes; closed on the way out."""
    profile = spec.profile
    reproducibility.seed_all(spec.seed)  # model init is part of the run
    module = build_model(
        profile, data.num_classes,
        # a resumed run takes its weights from the checkpoint: no download, no file needed
        weights=None if resuming else backbone_init(spec.backbone_weights, profile.backbone))
    module = apply_surgery(module, dataclasses.asdict(plan))  # before the checkpoint is checked against it
    if syncs_batchnorm(profile, dist.get_world_size()):
        module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    loss = loss_for(plan)
    model = SegmentationModel(module, data.num_classes, torch.compile(loss) if profile.compile else loss)
    optimizer = DecoupledSGDW(model.parameters(), lr=plan.lr, momentum=plan.momentum, weight_decay=plan.weight_decay)
    schedulers = [CosineAnnealingScheduler(t_max="1dur", alpha_f=0.0)] if plan.lr_schedule == "cosine" else []
    if progress_bar is None:
        progress_bar = sys.stdout.isatty() and "ipykernel" not in sys.modules
    with warnings.catch_warnings():
        for pattern in _QUIET:
            warnings.filterwarnings("ignore", message=pattern)
        # Composer unpickles the checkpoint it loads with weights_only=False, so it gets a private copy of
        # latest.pt, the bytes that were checked (segkit.checkpoints), deleted once loaded; a file swapped
        # into the run folder meanwhile is never unpickled.
        resume_from = checkpoints.checked_copy(folder / CHECKPOINT_FILE, model) if resuming else None
        with resume_from or contextlib.nullcontext() as checked:
            trainer = Trainer(
                model=model,
                # masks travel as bytes and become training labels on the device (data.pack_masks)
                train_dataloader=DataSpec(data.train_loader, microbatch_transforms=unpack_masks),
                eval_dataloader=DataSpec(data.val_loader, microbatch_transforms=unpack_masks),
                max_duration=max_duration,
                optimizers=optimizer,
                schedulers=schedulers,
                step_schedulers_every_batch=True,
                algorithms=build_algorithms(plan),
                callbacks=list(callbacks),
                loggers=[],
                run_name=folder.name,
                seed=spec.seed,
                device=profile.device,
                precision=profile.precision,
                device_train_microbatch_size="auto" if profile.microbatch_size == "auto" else data.microbatch,
                compile_config={} if profile.compile else None,
                load_path=str(checked) if checked else None,
                progress_bar=progress_bar,
                log_to_console=False,
                python_log_level=None,
            )
        if profile.microbatch_size == "auto":  # Composer would start from the whole device batch
            trainer.state.device_train_microbatch_size = data.microbatch
        try:
            yield trainer
        except BaseException:
            with contextlib.suppress(Exception):  # after a lost process close() fails too: the first error tells
                trainer.close()
            raise
        trainer.close()


def open_shared_run(folder: Path, info: dict[str, Any]) -> tuple[Run, bool]:
    """``segkit.runs.open_run``, decided once by global rank 0 and shared with every process.

    Each process deciding for itself would let a node that does not see the checkpoint start fresh
    while the others resume, and Composer would then wait at a barrier forever. So the folder is
    first checked to be one folder for all (``check_shared_folder``), rank 0 opens the run, and its
    decision (or its error) goes to every process.
    """
    if dist.get_world_size() == 1:
        return open_run(folder, info)
    check_shared_folder(folder)
    decision: list[Any] = [None]
    if dist.get_global_rank() == 0:
        try:
            run, resuming = open_run(folder, info)
            decision = [(run.info, run.history, resuming)]
        except SegkitError as error:
            decision = [error]
    dist.broadcast_object_list(decision, src=0)
    if isinstance(decision[0], SegkitError):
        raise decision[0]
    shared_info, history, resuming = decision[0]
    return Run(folder=folder, info=shared_info, history=history), resuming


def check_shared_folder(folder: Path, patience: float = 10.0) -> None:
    """Check that every process sees the same run folder: rank 0 writes a file, every rank looks for it.

    ``patience``: seconds a rank keeps looking (a network file system may show a new file late).

    Raises:
        ConfigError: on every rank, naming a rank and host that do not see it, instead of a hang later.
    """
    token = [secrets.token_hex(8) if dist.get_global_rank() == 0 else None]
    dist.broadcast_object_list(token, src=0)
    marker = folder / f".shared-check-{token[0]}"
    if dist.get_global_rank() == 0:
        marker.write_text(token[0])
    dist.barrier()
    deadline = time.monotonic() + patience
    while not marker.is_file() and time.monotonic() < deadline:
        time.sleep(0.5)
    seen = dist.all_gather_object((marker.is_file(), socket.gethostname(), dist.get_global_rank()))
    dist.barrier()
    if dist.get_global_rank() == 0:
        marker.unlink(missing_ok=True)
    blind = [(host, rank) for visible, host, rank in seen if not visible]
    if blind:
        host, rank = blind[0]
        raise ConfigError(f"save folder {folder.parent} is not shared by every process: rank {rank} on {host} does "
                          f"not see what rank 0 wrote in {folder.name}/; put save_folder on a file system every node "
                          f"mounts at the same path (docs/distributed.md)")


def check_shared(dataset: torch.utils.data.Dataset, workers: int) -> None:
    """``segkit.data.check_files`` over every process: each reads its share, and the first error found by
    any of them is raised by all of them (rather than one failing while the others wait for it)."""
    world, rank = dist.get_world_size(), dist.get_global_rank()
    try:
        check_files(dataset, range(rank, len(dataset), world), workers)
        found = None
    except DataError as error:
        found = str(error)
    errors = [error for error in (dist.all_gather_object(found) if world > 1 else [found]) if error]
    if errors:
        raise DataError(errors[0])


def fit(trainer: Trainer, run: Run) -> None:
    """``trainer.fit()``, recording in metrics.json how it ended if it did not finish."""
    elapsed = trainer.state.get_elapsed_duration()
    if elapsed is not None and elapsed >= 1:  # killed after training, before model.pt was saved
        return
    # The signals stay ours until the ending is recorded: the launcher's SIGTERM often follows the error
    # a lost peer raises, and Composer's own handler would exit in the middle of the record.
    with stops_as_interrupts() as stops:
        try:
            try:
                trainer.fit()
            except RuntimeError as error:
                if stops.received:  # the interrupt landed in a library call that made it its own error (torch.save)
                    raise KeyboardInterrupt(stop_message(stops.received[0])) from error
                stuck = stalled_workers()
                stalled = stalled_worker_error(error, stuck)
                if stalled is not None:
                    for pid in stuck:  # a stopped worker ignores the loader's SIGTERM, and the process could not exit
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    raise stalled from None
                lost = lost_peer_error(error)
                if lost is None:
                    raise
                raise lost from None
        except (SegkitError, KeyboardInterrupt) as error:
            stops.quiet = True  # a signal from here on is noted, not raised: the record is written first
            lost = str(error).startswith("lost contact with another process")
            # Rank 0 keeps metrics.json; when the lost process may be rank 0 itself, any survivor says so.
            if dist.get_global_rank() == 0 or lost:
                status = "interrupted" if isinstance(error, KeyboardInterrupt) or lost else "failed"
                message = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
                with contextlib.suppress(SegkitError):  # a full disk may refuse this too; the error is raised anyway
                    run.set_status(status, message)
            raise


@dataclasses.dataclass
class Stops:
    """The stop signals received while ``stops_as_interrupts`` holds them; ``quiet``: note, do not raise."""

    received: list[int] = dataclasses.field(default_factory=list)
    quiet: bool = False


@contextlib.contextmanager
def stops_as_interrupts() -> Iterator[Stops]:
    """SIGINT and SIGTERM raised as KeyboardInterrupt while training, so that ``fit`` records the run as
    interrupted: Ctrl-C, a notebook's stop, Composer's launcher ending a run whose other process failed, a
    scheduler. Importing Composer makes both signals ``sys.exit`` (composer/core/engine.py), which would end
    the run with metrics.json still saying running. Yields the signals received (an interrupt inside
    ``torch.save`` comes out as torch's RuntimeError). The main thread only: signals are handled there."""
    stops = Stops()
    if threading.current_thread() is not threading.main_thread():
        yield stops
        return

    def interrupt(signum, frame):
        stops.received.append(signum)
        if not stops.quiet:
            raise KeyboardInterrupt(stop_message(signum))

    before = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stops
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def stop_message(signum: int) -> str:
    return "" if signum == signal.SIGINT else ("stopped by SIGTERM (the launcher ending a run whose other process "
                                               "failed, or a scheduler)")


def save_weights(trainer: Trainer, path: Path) -> None:
    """Save the weights that were evaluated (EMA weights where EMA ran) as a plain state dict."""
    state = evaluated_weights(trainer.state)
    atomic_write(path, lambda file: torch.save(state, file))


def save_checkpoint(state: State, path: Path) -> None:
    """Write the full training state to ``path`` atomically (rank 0 writes, every rank calls).

    A checkpoint is Composer's training state (``{"state": ..., "rng": ...}``), so that
    ``Trainer(load_path=...)`` resumes it; Composer reads a private copy that ``segkit.checkpoints`` checked.
    """
    checkpoint = {"state": state.state_dict(), "rng": reproducibility.get_rng_state()}
    if dist.get_global_rank() == 0:
        atomic_write(path, lambda file: torch.save(checkpoint, file))  # streamed: no copy in memory
    dist.barrier()

"""The GPU check: the reference job's mechanics and speed on one GPU, in two calls of under 8 minutes.

Meant for a machine with Python 3.12 and torch but no Composer, no Jupyter and no network
(bench/gpu_check.sh installs the wheels of bench/gpu_bundle.py first). It trains on generated scenes
in the ADEChallengeData2016 layout, with ADE20k's 150 classes (the reference model's head) and random
initialization (no network, so no ImageNet weights: speed and mechanics are checked, not accuracy).
The parts, in the order they run:

    hot          the a100 profile's hot recipe for 20 steps: AMP, channels-last, EMA, SAM through the
                 gradient scaler, MixUp, automatic microbatching. The loss is finite and falls, and every
                 step whose first gradients were finite ran SAM's second forward-backward pass (counted as
                 Composer's BEFORE_TRAIN_BATCH events, one per pass). Also: images/s, peak memory, the
                 microbatch size found, the share of time waiting for data over steady steps and over
                 epoch starts apart, and one reference epoch on 8 GPUs projected from the images/s
    evaluate     the hot run's model.pt loads on this device and evaluates there, single-scale (its mIoU
                 is the run's last) and with test-time augmentation; images/s of each
    throughput   the model FLOPs utilisation (MFU) of a plain training step of ResNet-101 OS8 at 512 px
                 in bf16 and in fp16 (FLOPs: the forward counted by torch.utils.flop_counter, times 3)
                 against the GPU's dense peak, named in the output; one MFU line per precision
    profiler     torch.profiler over a few reference steps (the plain step at the a100 profile's
                 microbatch and precision): the top kernels by self CUDA time, and the GPU's busy share
    ab           one A/B line per speed change: the loss tail in the logits' precision, cudnn.benchmark,
                 channels-last, masks copied as uint8, torch.compile; images/s and MFU of each side at
                 the same microbatch (torch.compile in a child process, within a budget)
    gpu-profile  the first steps of the gpu profile, their time against the profile's throughput
                 assumption (segkit.profiles.GPU_THROUGHPUT_ASSUMPTION), and the epoch_scale the
                 measured speed would give; a FLOP count that differs from segkit's constant under
                 this torch is a WARNING, not a failure; the data wait as in hot
    loader       the a100 profile's training DataLoader alone (segkit.data.build_loaders) at 8 and 14
                 workers: images/s against the steps' demand, a batch's bytes, /dev/shm's size
    launcher     `segkit train` through Composer's launcher (on the GPU one process, NCCL; on the CPU two
                 gloo processes) for 2 batches; its model.pt holds the bare network's keys, loads and
                 evaluates on this device
    notebook     notebooks/03_hot.ipynb under papermill with segkit's engine for a few batches: no error
                 output, and the training cell ends with the plotly figure of the run's metrics.json
    kill-resume  a run SIGKILLed mid-epoch and started again has the history of an uninterrupted run
                 (tests/system/test_reliability.py's check, on this device: AMP's scaler, CUDA's generators),
                 exactly on the CPU, within the device's run-to-run noise (with a floor) on the GPU
    knee         the laptop problem's budget curve (docs/laptop-regime.md's knee criterion) where the GPU
                 affords it: steps/s calibrated at 1, 6 and 12 parallel processes, then the cpu profile's
                 baseline, full and compressed to 20%, at 2x, 4x and 8x its steps, 3 seeds, longest runs
                 first, as many as its budget fits (250 s, within 5 minutes); a setting at 20%/full >= 0.95
                 is printed as a CANDIDATE gpu-scenes profile

Each part prints PASS, FAIL or SKIP with its reason; the JSON results are rewritten after every part
(so a check killed half-way still leaves what ran), and the script exits 1 if a part failed.
``--parts`` runs a subset, still in the order above (evaluate reads the hot part's run, so it needs
hot in the same invocation); ``--call 1`` and ``--call 2`` are the two device calls (``CALLS``), each
under the device tool's 8 minutes with the bundle's install. A time budget guards the whole: a part
that would not fit is skipped, the hot run stops early when slow, the knee plans what fits, and an
alarm ends a part that overruns the budget.

    bash bench/gpu_check.sh --call 1               # on the GPU machine; log and JSON in $OUT
    bash bench/gpu_check.sh --call 2               # the second call (OUT keeps one call's files)
    bash bench/gpu_check.sh --parts hot,evaluate   # a subset
    .venv/bin/python bench/gpu_check.py --cpu      # here: the same logic at toy sizes, fp32
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: One reference epoch: the images it trains on (157 batches of 128), and the GPUs of the reference job.
REFERENCE_EPOCH_IMAGES = 20_096
REFERENCE_GPUS = 8
#: Dense tensor-core peaks in TFLOP/s for bf16 and fp16 (equal on these), from NVIDIA's datasheets,
#: by a part of the device name; the first match counts, so the more specific names come first.
GPU_PEAK_TFLOPS = {"H100 PCIe": 756.5, "H100 NVL": 835.5, "H100": 989.4, "H200 NVL": 835.5, "H200": 989.4,
                   "A100": 312.0}
#: ADE20k's classes: the reference model's head, and the generated scenes' labels without a class list.
NUM_CLASSES = 150
#: The autocast precision of a Composer precision, as the plain step names it.
AUTOCAST = {"amp_fp16": "fp16", "amp_bf16": "bf16", "fp32": "fp32"}
#: The evaluate part's batch when evaluate's default one runs out of GPU memory (its CPU default).
FALLBACK_EVAL_BATCH = 16
#: The kill/resume part's runs: 2 epochs of 2 steps on 8 scenes, killed after step 3.
KILL_RUN_DURATION = "2ep"
#: Keys of a run's history that are timings, so differ between two runs of the same computation.
TIMINGS = ("wall_time", "images_per_second")
#: History keys in percent (mIoU, pixel accuracy): a few pixels' flip moves them far more than a loss.
PERCENT_KEYS = ("miou", "miou_raw", "pixel_accuracy")
#: The notebook the notebook part runs.
NOTEBOOK = "03_hot"
#: The laptop regime's knee criterion (docs/laptop-regime.md): the baseline compressed into this share of
#: its epochs reaches at least ``KNEE_RATIO`` of the full baseline's validation mIoU.
KNEE_SHARE = 0.2
KNEE_RATIO = 0.95
#: The knee plan's margin: the calibrated times must fit the time left with this factor to spare.
KNEE_SAFETY = 1.15
#: The parts that read the generated scenes; the others run without generating them (30 s on the H200).
SCENE_PARTS = ("hot", "evaluate", "gpu-profile", "loader", "launcher", "notebook")


@dataclass(frozen=True)
class Sizes:
    """How big each part is: the GPU's sizes, or toy sizes for the CPU mode."""

    device: str  # "gpu" or "cpu"
    budget_s: float  # default wall-clock budget of the whole check
    scenes: tuple[int, int, int, int]  # generated set: training images, validation images, min and max side
    hot_steps: int  # steps of the hot recipe
    hot_time_cap_s: float  # the hot run stops early after this much training
    profile_steps: int  # steps of the gpu profile: its first epoch and the start of the second
    timed_steps: int  # training steps timed per precision for the MFU
    mfu_precisions: tuple[str, ...]  # autocast precisions of the MFU
    eval_tolerance: float  # mIoU points by which model.pt evaluated again may differ from the run's last mIoU
    resume_floor_percent: float  # kill-resume: least tolerance on mIoU and pixel accuracy (points)
    resume_floor_other: float  # kill-resume: least tolerance on the other history numbers (losses)
    launch_profile: str  # profile of the launcher part's `segkit train` (by name, as a user types it)
    launch_processes: int  # processes Composer's launcher starts
    notebook_profile: str  # notebook 03's profile parameter
    notebook_duration: str  # notebook 03's duration parameter
    profiler_steps: int  # reference steps recorded by torch.profiler
    top_kernels: int  # rows of the profiler's table: kernels (GPU) or operators (CPU) by self time
    ab_steps: int  # timed steps of each side of an A/B per round (two rounds, after two warm-up steps)
    compile_backend: str  # torch.compile's backend: "inductor" generates code; "eager" only traces (no compiler)
    compile_budget_s: float  # the torch.compile A/B's child process is stopped after this long
    loader_workers: tuple[int, ...]  # DataLoader worker counts of the loader part
    knee_profile: str  # the laptop problem: the cpu profile (on the GPU: on CUDA, fp32), or tiny on the CPU
    knee_multipliers: tuple[int, ...]  # the baseline's lengths, in multiples of the profile's own epochs
    knee_seeds: tuple[int, ...]  # seeds of every run (the regime's 17 and the next; the study's 101-103 unused)
    knee_processes: tuple[int, ...]  # parallel processes whose speed is calibrated; the plan uses one count
    knee_calibration_epochs: int  # epochs of each calibration run (the first is start-up, the rest timed)
    knee_budget_s: float  # the whole knee part: pretraining, calibration and runs
    part_seconds: dict[str, float]  # about how long each part takes: a part is skipped if less is left


#: The seconds of hot, evaluate, throughput, launcher, notebook and kill-resume as measured on an H200 on
#: 2026-11-30 (docs/gpu-check/), where the scenes took about 30 s on 16 cores and the bundle's install about
#: 15 s; the others are estimates, not yet run there (gpu-profile's now with 2 more steps and an
#: evaluation). The tolerances: the two evaluations of model.pt differ in batch composition under fp16
#: autocast; the resume floors allow a few of the kill-resume run's 4,096 validation pixels to flip, and a
#: loss to move in its third decimal, when two uninterrupted runs happen to agree exactly (there they
#: differed by 1.0). fp32 for the knee: the laptop problem's own arithmetic (the cpu profile trains in
#: fp32), and at 64 px in batches of 8 a step is bound by kernel launches, which mixed precision does not
#: shorten.
GPU_SIZES = Sizes(
    device="gpu", budget_s=420, scenes=(512, 128, 512, 640), hot_steps=20, hot_time_cap_s=60, profile_steps=6,
    timed_steps=8, mfu_precisions=("bf16", "fp16"), eval_tolerance=1.0, resume_floor_percent=0.5,
    resume_floor_other=0.01, launch_profile="a100", launch_processes=1, notebook_profile="a100",
    notebook_duration="4ba", profiler_steps=3, top_kernels=15, ab_steps=3, compile_backend="inductor",
    compile_budget_s=100, loader_workers=(8, 14), knee_profile="cpu", knee_multipliers=(2, 4, 8),
    knee_seeds=(17, 18, 19), knee_processes=(1, 6, 12), knee_calibration_epochs=3, knee_budget_s=250,
    part_seconds={"hot": 70, "evaluate": 15, "throughput": 15, "profiler": 15, "ab": 130, "gpu-profile": 26,
                  "loader": 25, "launcher": 100, "notebook": 65, "kill-resume": 30, "knee": 250},
)
#: On the CPU the tolerances are zero where the arithmetic repeats exactly (one thread count, fp32).
CPU_SIZES = Sizes(
    device="cpu", budget_s=480, scenes=(16, 4, 96, 144), hot_steps=8, hot_time_cap_s=60, profile_steps=6,
    timed_steps=3, mfu_precisions=("fp32",), eval_tolerance=0.02, resume_floor_percent=0.0,
    resume_floor_other=0.0, launch_profile="tiny", launch_processes=2, notebook_profile="tiny",
    notebook_duration="2ba", profiler_steps=2, top_kernels=10, ab_steps=1, compile_backend="eager",
    compile_budget_s=90, loader_workers=(1, 2), knee_profile="tiny", knee_multipliers=(1, 2),
    knee_seeds=(17,), knee_processes=(2,), knee_calibration_epochs=2, knee_budget_s=120,
    part_seconds={"hot": 15, "evaluate": 3, "throughput": 5, "profiler": 3, "ab": 20, "gpu-profile": 10,
                  "loader": 8, "launcher": 20, "notebook": 30, "kill-resume": 25, "knee": 45},
)
#: The two calls of the device tool that run the whole check on the GPU (``--call``): the parts that read
#: the generated scenes, then the A/Bs and the knee. Each stays under gpu_check.sh's 450 s with the
#: bundle's install (and the scenes, in the first); tests/system/test_gpu_check.py adds them up.
CALLS = {
    "1": ("hot", "evaluate", "throughput", "profiler", "gpu-profile", "loader", "launcher", "notebook", "kill-resume"),
    "2": ("ab", "knee"),
}


class CheckFailed(Exception):
    """An expectation of the check did not hold."""


class CannotRun(Exception):
    """A part cannot run here; the message says why."""


class OutOfTime(BaseException):
    """The time budget ran out (a BaseException, so that no ``except Exception`` on the way swallows it)."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass
class Context:
    """What the parts share: sizes, folders, the device, and numbers one part measures for another."""

    sizes: Sizes
    scenes: Path | None  # the generated set (None when no part asked for reads it)
    work: Path  # run folders and the small set of the kill/resume part
    deadline: float  # time.monotonic() at which the budget ends
    out: Path | None = None  # where the JSON goes; the notebook, profiler table and knee histories go there too
    # what the parts share: "device_name"; from hot: "microbatch" (its search's), "hot_run" (the run folder),
    # "hot_stopped_early"; "demand" (images/s of the steps measured so far, for the loader); "matmul" (the
    # measured matrix-product rate and size per precision)
    measured: dict[str, Any] = dataclasses.field(default_factory=dict)

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()

    @property
    def torch_device(self) -> str:
        return "cuda" if self.sizes.device == "gpu" else "cpu"

    def stand_in(self, name: str):
        """The named profile on the GPU; on the CPU the tiny profile under its name (same recipe
        mechanics, toy sizes, fp32, a fixed microbatch)."""
        from segkit.profiles import get_profile

        profile = get_profile(name)
        if self.sizes.device == "gpu":
            return profile
        return dataclasses.replace(get_profile("tiny"), name=f"{name}-on-cpu")


# --- data -------------------------------------------------------------------------------------------

def make_scenes(root: Path, train_images: int, val_images: int, min_size: int, max_size: int) -> Path:
    """Scenes in the ADEChallengeData2016 layout, on every core (``segkit.scenes.write_scenes_in_parallel``),
    without a class list: the loader then takes ADE20k's 150 classes, the reference's head. Called before
    CUDA starts in this process: the generating processes are forked from it."""
    from segkit.scenes import write_scenes_in_parallel

    return write_scenes_in_parallel(root, train_images, val_images, min_size=min_size, max_size=max_size,
                                    workers=min(os.cpu_count() or 1, 16), class_list=False)


def step_log_callback(time_cap_s: float = math.inf):
    """A Composer callback recording every training step (``.steps``) and the run's end state (``.end``).

    Per step: the loss, the number of forward-backward passes (BEFORE_TRAIN_BATCH events), the
    microbatch size at its start and end (they differ while automatic microbatching searches), the
    gradient scaler's scale before and after (it halves when a pass found inf/NaN gradients), SAM's step
    index, the learning rate, whether it starts an epoch, and its times: waiting for data (since the
    previous step or evaluation ended) and computing. Training stops early once it has run ``time_cap_s``.
    """
    from composer import Callback

    class StepLog(Callback):
        def __init__(self):
            self.steps: list[dict[str, Any]] = []
            self.end: dict[str, Any] = {}
            self.stopped_early = False
            self._ready_at = self._fit_start = 0.0

        def fit_start(self, state, logger):
            if state.device.name == "gpu":
                import torch

                torch.cuda.reset_peak_memory_stats()
            self._ready_at = self._fit_start = time.monotonic()

        def batch_start(self, state, logger):
            self.steps.append({
                "step": int(state.timestamp.batch) + 1, "passes": 0, "waited_s": time.monotonic() - self._ready_at,
                "starts_epoch": int(state.timestamp.batch_in_epoch) == 0,
                "microbatch_start": state.device_train_microbatch_size, "scale_start": _scale(state),
                "sam_step_index": getattr(state.optimizers[0], "step_index", None),
                "lr": state.optimizers[0].param_groups[0]["lr"], "_started": time.monotonic()})

        def before_train_batch(self, state, logger):
            self.steps[-1]["passes"] += 1

        def batch_end(self, state, logger):
            step = self.steps[-1]
            step["compute_s"] = time.monotonic() - step.pop("_started")
            step["wall_s"] = step["waited_s"] + step["compute_s"]
            step["loss"] = float(state.total_loss_dict.get("loss/train/total", math.nan))
            step["microbatch_end"] = state.device_train_microbatch_size
            step["scale_end"] = _scale(state)
            self._ready_at = time.monotonic()
            if self._ready_at - self._fit_start > time_cap_s and not self.stopped_early:
                self.stopped_early = True
                state.stop_training()

        def eval_after_all(self, state, logger):  # after the evaluation and the checkpoint segkit writes
            self._ready_at = time.monotonic()

        def fit_end(self, state, logger):
            self.end = run_end_state(state)

    return StepLog()


def _scale(state) -> float | None:
    """The gradient scaler's scale, or None when no scaler is in use (fp32, bf16)."""
    scaler = state.scaler
    return float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else None


def run_end_state(state) -> dict[str, Any]:
    """What the algorithms left in a run's state: the evidence that each of them was active."""
    import resource

    import torch

    from segkit.algorithms import SegmentationMixUp
    from segkit.probes import ema_has_started

    convolution = next(p for p in state.model.parameters() if p.dim() == 4)
    mixup = [a for a in state.algorithms if isinstance(a, SegmentationMixUp)]
    return {
        "precision": str(state.precision.value),
        "scaler": type(state.scaler).__name__ if state.scaler is not None else None,
        "optimizer": type(state.optimizers[0]).__name__,
        "channels_last": convolution.is_contiguous(memory_format=torch.channels_last),
        "ema_started": ema_has_started(state),
        "mixup_weight": round(mixup[0].last_mixing, 4) if mixup and mixup[0].last_mixing is not None else None,
        "microbatch": state.device_train_microbatch_size,
        "peak_memory_gib": round((torch.cuda.max_memory_allocated() if state.device.name == "gpu" else
                                  resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**30, 2),
    }


def steady_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The steps after automatic microbatching settled, less the first of them (warm-up) and those that
    start an epoch: each worker loads a whole batch, so a new epoch's first batch waits for a worker to
    load all of it, a wait that these short epochs would count far more often than ADE20k's 157 steps do."""
    last_change = max((i for i, s in enumerate(steps) if s["microbatch_start"] != s["microbatch_end"]), default=-1)
    return [step for step in steps[last_change + 2:] if not step["starts_epoch"]]


def images_per_second(steps: list[dict[str, Any]], batch: int) -> float:
    """Training images per second over ``steps``, waiting for data included, evaluations excluded."""
    return batch * len(steps) / sum(step["wall_s"] for step in steps)


def data_wait(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The share of the steps' time spent waiting for data, over the steady steps (``steady_steps``) and
    over the later epochs' first steps apart, and over all steps as the check reported it before: each
    worker loads a whole batch, so a new epoch's first batch waits for one worker to load all of it (the
    first step also waits for the workers to start; its wait is given in seconds)."""

    def share(group: list[dict[str, Any]]) -> float | None:
        return round(sum(s["waited_s"] for s in group) / sum(s["wall_s"] for s in group), 3) if group else None

    steady = steady_steps(steps)
    starts = [step for step in steps[1:] if step["starts_epoch"]]
    return {"data_wait_steady": share(steady), "data_wait_epoch_starts": share(starts),
            "data_wait_all_steps": share(steps), "steady_steps": len(steady), "epoch_start_steps": len(starts),
            "first_step_wait_s": round(steps[0]["waited_s"], 2) if steps else None}


def data_wait_line(name: str, wait: dict[str, Any]) -> str:
    """The data wait as the check prints it (a share is "-" where no step of its kind ran)."""

    def percent(share: float | None) -> str:
        return "-" if share is None else f"{share:.1%}"

    def steps(count: int) -> str:
        return f"{count} step" + ("" if count == 1 else "s")

    return (f"data wait {name}: steady steps {percent(wait['data_wait_steady'])} ({steps(wait['steady_steps'])}), "
            f"epoch starts {percent(wait['data_wait_epoch_starts'])} ({steps(wait['epoch_start_steps'])}), "
            f"all steps {percent(wait['data_wait_all_steps'])}; the first step waited {wait['first_step_wait_s']:g} s")


def projected_epoch_minutes(rate: float) -> float:
    """Minutes of one reference epoch on the reference's GPUs at ``rate`` images/s per GPU (linear scaling)."""
    return REFERENCE_EPOCH_IMAGES / (REFERENCE_GPUS * rate) / 60


def train_observed(recipe: str, profile, data: Path, folder: Path, run_name: str, duration: str,
                   callbacks: list) -> Any:
    """``segkit.train`` with random initialization, quietly, in ``folder``."""
    from segkit.engine import train
    from segkit.spec import run_spec

    spec = run_spec(recipe, profile, data, duration=duration, weights="none")
    return train(spec, run_name=run_name, save_folder=folder, callbacks=callbacks, print_progress=False,
                 progress_bar=False)


# --- FLOPs and speed --------------------------------------------------------------------------------

def forward_flops_per_image(profile, num_classes: int = NUM_CLASSES) -> float:
    """FLOPs of one image's forward pass through the profile's model (``segkit.model.forward_flops``)."""
    from segkit.model import forward_flops

    return forward_flops(profile, num_classes, profile.image_size)


def reference_microbatch(ctx: Context, profile) -> int:
    """The microbatch of the reference step: the one hot's search settled on, else where the profile's
    automatic microbatching starts on one device (``segkit.devices.check_microbatch``: 32 for the a100
    profile at 512 px and 150 classes; on the CPU the stand-in's fixed one)."""
    from segkit.devices import check_microbatch

    if "microbatch" in ctx.measured:
        return ctx.measured["microbatch"]
    return check_microbatch(profile.microbatch_size, profile.global_batch_size, NUM_CLASSES, profile.image_size)


@dataclass(frozen=True)
class StepVariant:
    """One way to run the plain training step: a side of an A/B. The defaults are the throughput part's."""

    precision: str = "fp16"  # autocast dtype: "bf16", "fp16" (with a gradient scaler) or "fp32"
    channels_last: bool = True  # model and images in NHWC memory format
    cudnn_benchmark: bool = False  # torch.backends.cudnn.benchmark while stepping: cuDNN times its algorithms
    loss: str = "segkit"  # "segkit": segkit.losses; "fp32-tail": the loss tail before it kept the precision


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    """``torch.backends.cudnn.benchmark`` set to ``enabled`` inside, restored after."""
    import torch

    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def prepare_step(model, profile, variant: StepVariant, batch: int, compile_backend: str | None = None,
                 num_classes: int = NUM_CLASSES) -> Callable[[], None]:
    """One plain training step of ``model`` (forward, loss, backward, SGD step) on random data at ``batch``,
    run as ``variant`` says; the model is put in the variant's memory format. With ``compile_backend`` the
    forward and the loss go through ``torch.compile`` (compiled on the first call)."""
    import torch

    from segkit.losses import SegmentationLoss

    device = next(model.parameters()).device
    memory_format = torch.channels_last if variant.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    images = torch.randn(batch, 3, profile.image_size, profile.image_size, device=device)
    images = images.contiguous(memory_format=memory_format)  # (N, 3, H, W)
    masks = torch.randint(-1, num_classes, (batch, profile.image_size, profile.image_size), device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[variant.precision]
    scaler = torch.amp.GradScaler(device.type, enabled=variant.precision == "fp16")
    loss_fn = SegmentationLoss() if variant.loss == "segkit" else fp32_tail_loss

    def forward_loss(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return loss_fn(model(images), masks)["total"]

    if compile_backend is not None:
        forward_loss = torch.compile(forward_loss, backend=compile_backend)

    def step() -> None:
        with cudnn_benchmark(variant.cudnn_benchmark), \
                torch.autocast(device.type, dtype=dtype, enabled=variant.precision != "fp32"):
            loss = forward_loss(images, masks)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def synchronize(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_steps(step: Callable[[], Any], steps: int, device) -> float:
    """Seconds per call of ``step`` over ``steps`` calls, the device's queue drained before and after."""
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - started) / steps


def build_reference_model(profile, device: str):
    from segkit.model import build_model

    return build_model(profile, NUM_CLASSES).to(device)


def time_training_step(profile, precision: str, batch: int, steps: int) -> float:
    """Seconds per plain training step of the profile's model on random data at ``batch``, channels-last,
    under autocast to ``precision`` ("bf16", "fp16", "fp32"), after two warm-up steps."""
    device = "cuda" if profile.device == "gpu" else "cpu"
    step = prepare_step(build_reference_model(profile, device), profile, StepVariant(precision=precision), batch)
    for _ in range(2):  # warm-up: kernels chosen, memory allocated
        step()
    return time_steps(step, steps, device)


def ab_seconds(model, profile, a: StepVariant, b: StepVariant, batch: int, steps: int) -> tuple[float, float]:
    """Seconds per step of A and B, each on its own copy of ``model``: two warm-up steps each, then two
    rounds of ``steps`` steps taking turns; each side's faster round (the less disturbed one)."""
    import copy

    device = next(model.parameters()).device
    sides = [prepare_step(copy.deepcopy(model), profile, variant, batch) for variant in (a, b)]
    for step in sides:
        for _ in range(2):
            step()
    best = [math.inf, math.inf]
    for _ in range(2):
        for index, step in enumerate(sides):
            best[index] = min(best[index], time_steps(step, steps, device))
    return best[0], best[1]


def mask_copy_seconds(batch: int, size: int, device: str, repeats: int) -> dict[str, Any]:
    """Seconds to bring one batch of masks to ``device`` (from pinned memory on a GPU): as int64 (-1 =
    ignored, as the loader yields them now), and as uint8 with ADE20k's raw labels (0 = ignored), widened
    and shifted on the device to the same int64 masks. The faster of two rounds of ``repeats`` copies."""
    import torch

    raw = torch.randint(0, NUM_CLASSES + 1, (batch, size, size), dtype=torch.uint8)  # (N, H, W)
    wide = raw.long() - 1
    if torch.device(device).type == "cuda":
        raw, wide = raw.pin_memory(), wide.pin_memory()

    def as_int64():
        return wide.to(device, non_blocking=True, copy=True)

    def as_uint8():
        return raw.to(device, non_blocking=True, copy=True).long() - 1

    expect(torch.equal(as_int64().cpu(), as_uint8().cpu()), "uint8 masks widened on the device differ from int64")
    seconds = [min(time_steps(copy, repeats, device) for _ in range(2)) for copy in (as_int64, as_uint8)]
    return {"int64_s": seconds[0], "uint8_s": seconds[1], "int64_bytes": wide.nbytes, "uint8_bytes": raw.nbytes}


def graph_breaks() -> int | None:
    """Graph breaks torch.compile's tracer counted in this process (a private counter: None if it moved)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return None
    return int(sum(counters["graph_break"].values()))


def compiled_step_child(options: dict[str, Any]) -> None:
    """The child of the torch.compile A/B: the plain step eager, then compiled, one ``compile-ab`` JSON line
    after each (so that a child stopped at its budget still reports the eager side)."""
    from segkit.profiles import Profile

    profile, variant = Profile(**options["profile"]), StepVariant(**options["variant"])
    batch, steps, device = options["batch"], options["steps"], options["device"]
    model = build_reference_model(profile, device)
    eager = prepare_step(model, profile, variant, batch)
    for _ in range(2):
        eager()
    eager_s = min(time_steps(eager, steps, device) for _ in range(2))
    print("compile-ab " + json.dumps({"eager_step_s": eager_s}), flush=True)
    compiled = prepare_step(model, profile, variant, batch, compile_backend=options["backend"])
    first_s = time_steps(compiled, 1, device)  # compiles the forward, then the backward
    compiled()
    compiled_s = min(time_steps(compiled, steps, device) for _ in range(2))
    print("compile-ab " + json.dumps({"compile_s": first_s - compiled_s, "compiled_step_s": compiled_s,
                                      "graph_breaks": graph_breaks()}), flush=True)


def datasheet_peak(device_name: str) -> float | None:
    """The GPU's dense bf16/fp16 peak in FLOP/s from its name (``GPU_PEAK_TFLOPS``), None if unknown."""
    return next((tflops * 1e12 for part, tflops in GPU_PEAK_TFLOPS.items() if part in device_name), None)


def matmul_rate(device: str, precision: str) -> tuple[float, int]:
    """FLOP/s of a square matrix product in ``precision`` measured here, and its size: 8192 on the GPU
    (what the device's notes measured, 788 TFLOP/s in bf16 on an H200), 1024 on the CPU."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    size = 8192 if device == "gpu" else 1024
    where = "cuda" if device == "gpu" else "cpu"
    a, b = torch.randn(size, size, device=where, dtype=dtype), torch.randn(size, size, device=where, dtype=dtype)
    synchronize = torch.cuda.synchronize if device == "gpu" else (lambda: None)
    for _ in range(3):
        a @ b
    synchronize()
    started, repeats = time.perf_counter(), 0
    while time.perf_counter() - started < 0.5:
        a @ b
        repeats += 1
        if device == "gpu" and repeats % 10 == 0:
            synchronize()
    synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - started), size


def mfu_line(precision: str, result: dict[str, Any], batch: int) -> str:
    """One precision's MFU as the check prints it: MFU %, TFLOP/s, images/s."""
    against = (f"the {result['matmul_tflop_per_s']:g} TFLOP/s of a {result['matmul_size']}^2 {precision} matmul here"
               if result["peak_tflop_per_s"] is None else f"the datasheet's {result['peak_tflop_per_s']:g} TFLOP/s")
    line = (f"MFU {precision}: {100 * result['mfu']:.1f}% of {against}: {result['tflop_per_s']:g} TFLOP/s, "
            f"{result['images_per_second']:g} images/s (batch {batch}, {result['step_s']:g} s a step)")
    if result["peak_tflop_per_s"] is not None:
        line += (f"; {100 * result['mfu_of_matmul']:.1f}% of the {result['matmul_tflop_per_s']:g} TFLOP/s "
                 f"a {result['matmul_size']}^2 {precision} matmul reached here")
    return line


# --- the loss tail as it was: the A side of the loss-tail A/B ------------------------------------------
# segkit.losses before the loss kept the logits' precision (git show 36136cf:segkit/losses.py), for plain
# masks: the log-softmax of a full-size fp32 copy of the logits, and three reads back to the host per call
# (a boolean index into the masks for bincount, any(), and a boolean index into the per-class Dice).

def fp32_tail_loss(logits, target, ce_weight: float = 0.375, dice_weight: float = 1.125,
                   ignore_index: int = -1) -> dict[str, Any]:
    """The old ``SegmentationLoss.forward``: ``ce_weight * cross-entropy + dice_weight * Dice``."""
    from torch.nn import functional as F

    log_probs = F.log_softmax(logits.float(), dim=1)  # (N, C, H, W) in fp32: a full-size copy
    mass = (target != ignore_index).sum()
    cross_entropy = F.nll_loss(log_probs, target, ignore_index=ignore_index, reduction="sum") / mass.clamp_min(1e-12)
    dice = fp32_tail_dice_loss(log_probs.exp(), target, ignore_index)
    return {"total": ce_weight * cross_entropy + dice_weight * dice, "cross_entropy": cross_entropy, "dice": dice}


def fp32_tail_dice_loss(probs, target, ignore_index: int = -1, smooth: float = 1e-5):
    """The old batch-wise soft Dice over the classes present in the target."""
    import torch

    num_classes = probs.shape[1]
    valid = target != ignore_index
    labels = target.clamp_min(0)  # (N, H, W), ignored pixels point at class 0 and are masked below
    picked = probs.gather(1, labels.unsqueeze(1)).squeeze(1) * valid  # (N, H, W): p at the true class
    intersection = probs.new_zeros(num_classes).index_add(0, labels.flatten(), picked.flatten())
    target_mass = probs.new_zeros(num_classes) + torch.bincount(labels[valid], minlength=num_classes)  # host sync
    prediction_mass = torch.einsum("nchw,nhw->c", probs, valid.to(probs.dtype))
    present = target_mass > 0
    if not present.any():  # host sync
        return probs.sum() * 0.0
    dice = 1 - (2 * intersection + smooth) / (target_mass + prediction_mass + smooth)
    return dice[present].mean()  # host sync


# --- the parts --------------------------------------------------------------------------------------

def check_hot(ctx: Context) -> dict[str, Any]:
    """The a100 profile's hot recipe for a few dozen steps, with every algorithm observed."""
    profile = ctx.stand_in("a100")
    log = step_log_callback(ctx.sizes.hot_time_cap_s)
    result = train_observed("hot", profile, ctx.scenes, ctx.work, "hot", f"{ctx.sizes.hot_steps}ba", [log])
    steps, end = log.steps, log.end
    ctx.measured.update(microbatch=end["microbatch"], hot_run=result.folder, hot_stopped_early=log.stopped_early)
    losses = [step["loss"] for step in steps]
    expect(len(steps) >= 6, f"only {len(steps)} steps ran within {ctx.sizes.hot_time_cap_s:g} s")
    expect(all(math.isfinite(loss) for loss in losses), f"a training loss is not finite: {losses}")
    third = len(losses) // 3
    first, last = sum(losses[:third]) / third, sum(losses[-third:]) / third
    expect(last < first, f"the loss did not fall: mean {first:.4f} over the first {third} steps, {last:.4f} "
                         f"over the last {third}")
    sam = sam_passes(steps)
    expect(end["optimizer"] == "SAMOptimizer", f"the optimizer is {end['optimizer']}, not segkit's SAMOptimizer")
    expect(end["channels_last"], "the model's convolutions are not channels-last")
    expect(end["ema_started"], "the EMA never started")
    expect(end["mixup_weight"] is not None, "MixUp never mixed a batch")
    if profile.precision == "amp_fp16":
        expect(end["scaler"] == "ClosureGradScaler", f"the gradient scaler is {end['scaler']}: SAM's closure "
                                                     f"does not go through Composer's ClosureGradScaler")
    steady = steady_steps(steps)
    expect(bool(steady), "no step ran after automatic microbatching settled")
    rate = images_per_second(steady, profile.global_batch_size)
    ctx.measured["demand"] = {**ctx.measured.get("demand", {}), "hot": rate}
    wait = data_wait(steps)
    return {"steps": len(steps), "stopped_early": log.stopped_early, "loss_first_third": round(first, 4),
            "loss_last_third": round(last, 4), **sam, **end, "images_per_second": round(rate, 2),
            "step_s": round(profile.global_batch_size / rate, 3), **wait,
            "projected_reference_epoch_minutes_on_8_gpus": round(projected_epoch_minutes(rate), 2),
            "losses": [round(loss, 4) for loss in losses], "lines": [data_wait_line("hot", wait)]}


def sam_passes(steps: list[dict[str, Any]]) -> dict[str, int]:
    """Check that SAM ran its second pass on every step it should have (hot: SAM every step).

    Steps where automatic microbatching was still searching are left out (an out-of-memory retry is a
    pass too). A step with one pass must be one where the scaler found inf/NaN gradients in the first
    pass (the scale dropped; SAM then skips its ascent); every other step must show two passes.
    """
    settled = [s for s in steps if s["microbatch_start"] == s["microbatch_end"]]
    skipped = [s for s in settled if s["scale_start"] is not None and s["scale_end"] < s["scale_start"]]
    two_pass = [s for s in settled if s["passes"] == 2]
    wrong = [s["step"] for s in settled if s["passes"] != 2 and not (s in skipped and s["passes"] == 1)]
    expect(not wrong, f"steps {wrong} ran {[s['passes'] for s in settled if s['step'] in wrong]} passes, not "
                      f"SAM's two")
    expect(bool(two_pass), "SAM's second pass never ran")
    return {"sam_second_passes": len(two_pass), "steps_skipped_by_scaler": len(skipped)}


def check_evaluate(ctx: Context) -> dict[str, Any]:
    """The hot run's model.pt on this device: it loads there, evaluates single-scale to the run's last
    mIoU, and with test-time augmentation (segkit.inference's 6 scales and a flip); images/s of each, over
    the whole call (loading the weights and starting the loader workers included)."""
    import torch

    from segkit.inference import evaluate, load_model, module_device

    folder = ctx.measured.get("hot_run")
    if folder is None:
        raise CannotRun("it evaluates the hot part's run, which did not run before it (--parts hot,evaluate)")
    model, run = load_model(folder, device=ctx.torch_device)
    where = module_device(model).type
    del model
    expect(where == ctx.torch_device, f"load_model put the weights on {where}, not {ctx.torch_device}")
    images = run.info["data"]["val_images"]
    results: dict[str, Any] = {"loaded_on": where, "val_images": images, "run_miou": round(run.final["miou"], 4),
                               "failures": []}
    for name, augmented in (("single_scale", False), ("tta", True)):
        batch = None  # evaluate's default: on a GPU the run's batch per process (128 on a100)
        try:
            started = time.perf_counter()
            scores = evaluate(folder, device=ctx.torch_device, augmented=augmented)
        except torch.cuda.OutOfMemoryError:  # notebook 04 would fail the same way: measure smaller, then fail
            _release_memory()
            batch = FALLBACK_EVAL_BATCH
            results["failures"].append(f"{name} ran out of GPU memory at evaluate's default batch "
                                       f"({run.info['profile']['global_batch_size'] // run.info['world_size']}); "
                                       f"measured at batch {batch} instead")
            started = time.perf_counter()
            scores = evaluate(folder, device=ctx.torch_device, augmented=augmented, batch_size=batch)
        seconds = time.perf_counter() - started
        expect(math.isfinite(scores["miou"]), f"{name}: the mIoU is {scores['miou']}")
        results[name] = {"miou": round(scores["miou"], 4), "seconds": round(seconds, 2), "batch": batch or "default",
                         "images_per_second": significant(images / seconds, 3)}
    difference = abs(results["single_scale"]["miou"] - run.final["miou"])
    results["miou_difference_from_run"] = round(difference, 4)
    results["lines"] = [f"evaluate on {where}, {images} images: {name} {results[name]['images_per_second']:g} "
                        f"images/s (mIoU {results[name]['miou']:.2f}, {results[name]['seconds']:g} s)"
                        for name in ("single_scale", "tta")]
    if ctx.measured.get("hot_stopped_early"):
        results["lines"].append("the hot run stopped early, after its last evaluation: its mIoU is not compared")
    elif difference > ctx.sizes.eval_tolerance:
        results["failures"].append(f"model.pt evaluated again gives mIoU {results['single_scale']['miou']:.4f}, "
                                   f"the run's last evaluation {run.final['miou']:.4f} (tolerance "
                                   f"{ctx.sizes.eval_tolerance:g})")
    return results


def peak_flops(ctx: Context, precision: str) -> tuple[float, float | None, float, int]:
    """What an MFU is taken against: the GPU's datasheet peak (``GPU_PEAK_TFLOPS``), else (the CPU, an
    unknown GPU) a matrix product's rate measured here; with the peak (None if unknown) and that measured
    rate and its size, measured once per precision."""
    rates = ctx.measured.setdefault("matmul", {})
    if precision not in rates:
        rates[precision] = matmul_rate(ctx.sizes.device, precision)
    matmul, size = rates[precision]
    peak = datasheet_peak(ctx.measured.get("device_name", "")) if ctx.sizes.device == "gpu" else None
    return peak or matmul, peak, matmul, size


def check_throughput(ctx: Context) -> dict[str, Any]:
    """MFU of a plain training step of the a100 profile's model in each precision, against the GPU's
    datasheet peak (on the CPU, or a GPU not in ``GPU_PEAK_TFLOPS``: a matrix product's measured rate)."""
    profile = ctx.stand_in("a100")
    train_flops = 3 * forward_flops_per_image(profile)
    batch = reference_microbatch(ctx, profile)
    results: dict[str, Any] = {"batch": batch, "train_gflop_per_image": round(train_flops / 1e9, 1), "lines": []}
    for precision in ctx.sizes.mfu_precisions:
        seconds = time_training_step(profile, precision, batch, ctx.sizes.timed_steps)
        achieved = batch * train_flops / seconds
        reference, peak, matmul, size = peak_flops(ctx, precision)
        ctx.measured["demand"] = {**ctx.measured.get("demand", {}), f"plain {precision} step": batch / seconds}
        results[precision] = {
            "step_s": round(seconds, 4), "images_per_second": round(batch / seconds, 2),
            "tflop_per_s": significant(achieved / 1e12, 3), "mfu": round(achieved / reference, 4),
            "peak_tflop_per_s": None if peak is None else significant(peak / 1e12),
            "matmul_tflop_per_s": significant(matmul / 1e12, 3), "matmul_size": size,
            "mfu_of_matmul": round(achieved / matmul, 4),
            "projected_reference_epoch_minutes_on_8_gpus": round(projected_epoch_minutes(batch / seconds), 2)}
        results["lines"].append(mfu_line(precision, results[precision], batch))
        expect(0 < achieved / reference < 1.5, f"{precision}: an MFU of {achieved / reference:.2f} is not plausible")
    source = (f"{ctx.measured.get('device_name')}: datasheet dense bf16/fp16 peak {peak / 1e12:g} TFLOP/s" if peak
              else f"{ctx.measured.get('device_name', 'CPU')}: measured {ctx.sizes.mfu_precisions[0]} "
                   f"{results[ctx.sizes.mfu_precisions[0]]['matmul_size']}^2 matmul rate")
    return {"peak_used": source, **results}


def flop_count_warning() -> str | None:
    """A warning when this torch's FLOP counter gives the reference model another count than the one
    segkit.profiles holds (counted under torch 2.7.0); None when they agree within 1%. The measured
    speeds use this torch's count; the gpu profile's epoch_scale uses segkit's."""
    import torch

    from segkit.profiles import REFERENCE_TRAIN_FLOPS_PER_IMAGE, get_profile

    counted = 3 * forward_flops_per_image(get_profile("gpu"))
    if abs(counted / REFERENCE_TRAIN_FLOPS_PER_IMAGE - 1) < 0.01:
        return None
    return (f"torch {torch.__version__} counts {counted / 1e12:.4f} TFLOP per training image of the gpu profile's "
            f"model, segkit.profiles assumes {REFERENCE_TRAIN_FLOPS_PER_IMAGE / 1e12:.4f} (counted under torch 2.7.0, "
            f"{counted / REFERENCE_TRAIN_FLOPS_PER_IMAGE - 1:+.1%}); the speeds here use this torch's count")


def check_gpu_profile(ctx: Context) -> dict[str, Any]:
    """The gpu profile's first steps against its throughput assumption (in the microbatches that hot's
    search found, when it ran: the same model and size, so the search need not run again)."""
    from segkit import recipes
    from segkit.profiles import GPU_THROUGHPUT_ASSUMPTION, gpu_epoch_scale

    profile = ctx.stand_in("gpu")
    if ctx.sizes.device == "gpu" and "microbatch" in ctx.measured:
        profile = dataclasses.replace(profile, microbatch_size=ctx.measured["microbatch"])
    warning = flop_count_warning()
    train_flops = 3 * forward_flops_per_image(profile)
    log = step_log_callback()
    train_observed("baseline", profile, ctx.scenes, ctx.work, "gpu-profile", f"{ctx.sizes.profile_steps}ba", [log])
    losses = [step["loss"] for step in log.steps]
    expect(all(math.isfinite(loss) for loss in losses), f"a training loss is not finite: {losses}")
    steady = steady_steps(log.steps)
    expect(bool(steady), "no step ran after automatic microbatching settled")
    rate = images_per_second(steady, profile.global_batch_size)
    ctx.measured["demand"] = {**ctx.measured.get("demand", {}), "gpu profile": rate}
    wait = data_wait(log.steps)
    measured_flops = rate * train_flops
    assumed_step_s = profile.global_batch_size * train_flops / GPU_THROUGHPUT_ASSUMPTION
    corrected = gpu_epoch_scale(measured_flops)
    baseline_images = recipes.scale(recipes.baseline(), profile).epochs * REFERENCE_EPOCH_IMAGES
    return {"step_s": significant(profile.global_batch_size / rate), "assumed_step_s": significant(assumed_step_s),
            "measured_tflop_per_s": significant(measured_flops / 1e12),
            "assumed_tflop_per_s": GPU_THROUGHPUT_ASSUMPTION / 1e12,
            "profile_epoch_scale": significant(profile.epoch_scale),
            "epoch_scale_at_measured_speed": significant(corrected),
            "baseline_hours_at_measured_speed": significant(baseline_images / rate / 3600),
            "images_per_second": round(rate, 2), **wait, "microbatch": log.end["microbatch"],
            "timed_steps": len(steady),
            "projected_reference_epoch_minutes_on_8_gpus": round(projected_epoch_minutes(rate), 2),
            "warnings": [warning] if warning else [], "lines": [data_wait_line("gpu-profile", wait)]}


def check_profiler(ctx: Context) -> dict[str, Any]:
    """torch.profiler over a few reference steps (the plain step at the a100 profile's microbatch and
    precision): the kernels with the most self CUDA time (on the CPU: operators by self CPU time), each
    per step and as a share of the device's busy time, and that busy time against the step's wall time.
    The whole table goes to gpu_check_profile.txt beside the JSON, with torch's own operator table."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as record

    profile = ctx.stand_in("a100")
    batch, precision, steps = reference_microbatch(ctx, profile), AUTOCAST[profile.precision], ctx.sizes.profiler_steps
    step = prepare_step(build_reference_model(profile, ctx.torch_device), profile, StepVariant(precision=precision),
                        batch)
    for _ in range(2):
        step()
    gpu = ctx.sizes.device == "gpu"
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if gpu else [ProfilerActivity.CPU]
    if not gpu:  # a CUDA build of torch on a machine without a GPU: the profiler's library logs an error line
        os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    with record(activities=activities) as recorder:
        wall_s = time_steps(step, steps, ctx.torch_device)
    averages = recorder.key_averages()

    def self_us(event) -> float:  # microseconds over all the recorded steps
        return event.self_device_time_total if gpu else event.self_cpu_time_total

    kind = DeviceType.CUDA if gpu else DeviceType.CPU
    # kernels (on the CPU operators), less the ranges of record_function annotations, which span them
    events = sorted((e for e in averages if e.device_type == kind and self_us(e) > 0
                     and not getattr(e, "is_user_annotation", False)), key=self_us, reverse=True)
    expect(bool(events), f"torch.profiler recorded no {'kernels' if gpu else 'operators'}")
    busy_us = sum(self_us(e) for e in events)
    top = [{"name": e.key, "ms_per_step": round(self_us(e) / steps / 1000, 3),
            "share_of_busy": round(self_us(e) / busy_us, 4), "calls_per_step": round(e.count / steps, 1)}
           for e in events[:ctx.sizes.top_kernels]]
    what = "kernels by self CUDA time" if gpu else "operators by self CPU time"
    head = (f"profiler, {steps} reference steps of batch {batch} ({precision}, channels-last): "
            f"{'GPU' if gpu else 'operators'} busy {busy_us / 1e6 / steps / wall_s:.0%} of "
            f"{1000 * wall_s:.1f} ms a step (profiled); top {what}:")
    rows = [f"{i:>3}. {row['share_of_busy']:6.1%} {row['ms_per_step']:9.3f} ms/step {row['calls_per_step']:6g}x  "
            f"{row['name']}" for i, row in enumerate(top, 1)]
    if ctx.out is not None:
        try:
            table = averages.table(sort_by="self_cuda_time_total" if gpu else "self_cpu_time_total", row_limit=30)
        except Exception as error:  # torch's own table is a convenience; the ranking above is the result
            table = f"torch's table failed: {type(error).__name__}: {error}"
        (ctx.out / "gpu_check_profile.txt").write_text("\n".join([head, *rows, "", "torch's operator table:",
                                                                   table]) + "\n")
    return {"batch": batch, "precision": precision, "steps": steps, "wall_ms_per_step": round(1000 * wall_s, 2),
            "busy_ms_per_step": round(busy_us / 1000 / steps, 2),
            "busy_share": round(busy_us / 1e6 / steps / wall_s, 4),
            "kinds": len(events), "top": top, "table_file": "gpu_check_profile.txt" if ctx.out else None,
            "lines": [head, *(row[:160] for row in rows[:5])]}


#: The A/Bs run in-process: name, the field of ``StepVariant`` it flips, the A and B values, and their labels.
STEP_CHANGES = (
    ("loss tail", "loss", ("fp32-tail", "fp32 log-softmax copy, 3 host syncs"), ("segkit", "segkit.losses")),
    ("cudnn.benchmark", "cudnn_benchmark", (False, "off"), (True, "on")),
    ("channels-last", "channels_last", (False, "NCHW"), (True, "channels-last")),
)


def ab_side(label: str, seconds: float, batch: int, train_flops: float | None, peak: float) -> dict[str, Any]:
    rate = batch / seconds
    return {"label": label, "step_s": significant(seconds), "images_per_second": significant(rate, 4),
            "mfu": None if train_flops is None else round(rate * train_flops / peak, 4)}


def ab_line(change: str, a: dict[str, Any], b: dict[str, Any], batch: int, extra: str = "") -> str:
    """One A/B as the check prints it: each side's images/s and MFU, B over A, and the microbatch."""

    def side(name: str, values: dict[str, Any]) -> str:
        mfu = "" if values["mfu"] is None else f", MFU {values['mfu']:.1%}"
        return f"{name} ({values['label']}) {values['images_per_second']:g} images/s{mfu}"

    ratio = b["images_per_second"] / a["images_per_second"]
    return f"A/B {change}: {side('A', a)}; {side('B', b)}; B/A {ratio:.3f}x; microbatch {batch}{extra}"


def check_ab(ctx: Context) -> dict[str, Any]:
    """Each speed change of the plain step as an A/B at the same microbatch (the reference step's), every
    other setting as a GPU run has them all: cudnn.benchmark on, channels-last, segkit.losses, eager.

    loss tail: the old fp32 tail (``fp32_tail_loss``) against segkit.losses; cudnn.benchmark off and on;
    channels-last against NCHW; a batch of masks to the device as int64 against uint8 widened there (the
    copy alone: images/s of copying, no MFU); torch.compile of the forward and the loss against eager, in
    a child process stopped after ``compile_budget_s``, its compile time printed apart (a compile that
    fails or overruns is a printed reason, not a failure: the eager side is still reported)."""
    profile = ctx.stand_in("a100")
    batch, precision = reference_microbatch(ctx, profile), AUTOCAST[profile.precision]
    train_flops = 3 * forward_flops_per_image(profile)
    peak = peak_flops(ctx, precision)[0]
    target = StepVariant(precision=precision, channels_last=True, cudnn_benchmark=True, loss="segkit")
    model = build_reference_model(profile, ctx.torch_device)
    results: dict[str, Any] = {"microbatch": batch, "precision": precision, "changes": {}, "lines": []}
    for change, field, (a_value, a_label), (b_value, b_label) in STEP_CHANGES:
        a_s, b_s = ab_seconds(model, profile, dataclasses.replace(target, **{field: a_value}),
                              dataclasses.replace(target, **{field: b_value}), batch, ctx.sizes.ab_steps)
        results["changes"][change] = {"a": ab_side(a_label, a_s, batch, train_flops, peak),
                                      "b": ab_side(b_label, b_s, batch, train_flops, peak)}
        _release_memory()
    del model
    _release_memory()
    device_batch = profile.global_batch_size  # one device's loader batch: the whole global batch
    copies = mask_copy_seconds(device_batch, profile.image_size, ctx.torch_device, repeats=5)
    results["changes"]["uint8 masks"] = {
        "a": ab_side(f"int64, {copies['int64_bytes'] / 1e6:.3g} MB", copies["int64_s"], device_batch, None, peak),
        "b": ab_side(f"uint8 widened there, {copies['uint8_bytes'] / 1e6:.3g} MB", copies["uint8_s"], device_batch,
                     None, peak)}
    results["changes"]["torch.compile"] = compile_ab(ctx, profile, target, batch, train_flops, peak)
    for change, sides in results["changes"].items():
        if "a" not in sides:
            results["lines"].append(f"A/B {change}: A {sides['eager']}; B skipped: {sides['skipped']}; "
                                    f"microbatch {batch}")
            continue
        sides["b_over_a"] = round(sides["b"]["images_per_second"] / sides["a"]["images_per_second"], 4)
        extra = (f"; compile {sides['compile_s']:.1f} s, graph breaks {sides['graph_breaks']}"
                 if change == "torch.compile" else "")
        results["lines"].append(ab_line(change + (" (the copy alone)" if change == "uint8 masks" else ""),
                                        sides["a"], sides["b"], device_batch if change == "uint8 masks" else batch,
                                        extra))
        results[f"{change.replace(' ', '_').replace('.', '_').replace('-', '_')}_b_over_a"] = sides["b_over_a"]
    return results


def compile_ab(ctx: Context, profile, variant: StepVariant, batch: int, train_flops: float,
               peak: float) -> dict[str, Any]:
    """The torch.compile A/B in a child process (``compiled_step_child``), stopped after the budget."""
    options = {"profile": dataclasses.asdict(profile), "variant": dataclasses.asdict(variant), "batch": batch,
               "steps": ctx.sizes.ab_steps, "device": ctx.torch_device, "backend": ctx.sizes.compile_backend}
    log = ctx.work / "compile-ab.log"
    budget = max(10.0, min(ctx.sizes.compile_budget_s, ctx.seconds_left() - 10))
    try:
        status = run_bounded([sys.executable, __file__, "--compiled-step", json.dumps(options)], budget, log)
    except subprocess.TimeoutExpired:
        status = None
    reported: dict[str, Any] = {}
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("compile-ab "):
            reported.update(json.loads(line.removeprefix("compile-ab ")))
    backend = ctx.sizes.compile_backend
    if "compiled_step_s" in reported:
        return {"a": ab_side("eager", reported["eager_step_s"], batch, train_flops, peak),
                "b": ab_side(f"torch.compile, {backend}", reported["compiled_step_s"], batch, train_flops, peak),
                "compile_s": round(reported["compile_s"], 1), "graph_breaks": reported["graph_breaks"],
                "backend": backend}
    if ctx.out is not None:  # what the child printed, for whoever reads the failure
        shutil.copy(log, ctx.out / "gpu_check_compile.log")
    eager = ("not measured" if "eager_step_s" not in reported else
             f"(eager) {batch / reported['eager_step_s']:.4g} images/s")
    skipped = (f"the compiled step was not ready within the {budget:.0f} s budget ({backend})" if status is None
               else f"the child ended with status {status}: {last_lines(log, 1)[-300:]}")
    return {"eager": eager, "skipped": skipped, "backend": backend}


def check_loader(ctx: Context) -> dict[str, Any]:
    """The a100 profile's training DataLoader alone (``segkit.data.build_loaders``, one device's batch: the
    whole global batch) over the generated scenes, repeated so that every worker has batches to load, at
    each of ``loader_workers``: steady images/s (from the batch that every worker's first fills to the
    last), against the images/s the steps measured before it ask for; a batch's bytes, and the /dev/shm
    the prefetched batches need (workers x 2 batches) against its size."""
    from torch.utils.data import ConcatDataset

    from segkit.data import build_loaders, open_dataset
    from segkit.devices import pins_memory
    from segkit.transforms import eval_transform, train_transform

    profile = ctx.stand_in("a100")
    batch = profile.global_batch_size
    train_set = open_dataset(ctx.scenes, "training", train_transform(profile.image_size))
    val_set = open_dataset(ctx.scenes, "validation", eval_transform(profile.image_size))
    demand = ctx.measured.get("demand", {})
    shm = shutil.disk_usage("/dev/shm") if Path("/dev/shm").is_dir() else None
    results: dict[str, Any] = {"batch": batch, "workers": {}, "lines": [], "warnings": [],
                               "dev_shm_gb": None if shm is None else round(shm.total / 1e9, 2),
                               "demand_images_per_second": {name: round(rate, 2) for name, rate in demand.items()}}
    for workers in ctx.sizes.loader_workers:
        wanted = 3 * workers  # the first `workers` batches arrive together; the next 2 x workers are timed
        repeats = math.ceil(wanted * batch / len(train_set))
        loader, _ = build_loaders(ConcatDataset([train_set] * repeats), val_set, batch, seed=17, num_workers=workers,
                                  pin_memory=pins_memory(profile.device), packed=True)  # as training loads it
        started = time.monotonic()
        arrivals, iterator, sample = [], iter(loader), None
        try:
            while len(arrivals) < wanted:
                sample = next(iterator, None)
                if sample is None:
                    break
                arrivals.append(time.monotonic())
        finally:
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            del iterator, loader
        expect(len(arrivals) == wanted, f"{workers} workers gave {len(arrivals)} batches, not {wanted}")
        rate = (wanted - workers) * batch / (arrivals[-1] - arrivals[workers - 1])
        images, masks = sample
        batch_bytes = images.nbytes + masks.nbytes
        prefetched = 2 * workers * batch_bytes  # DataLoader's prefetch_factor 2, in shared memory
        results["workers"][workers] = {"images_per_second": significant(rate, 4), "batches": wanted,
                                       "first_batch_s": round(arrivals[0] - started, 2),
                                       "prefetched_gb": significant(prefetched / 1e9, 3)}
        against = ", ".join(f"{rate / asked:.1f}x the {name}'s {asked:.4g}" for name, asked in demand.items())
        results["lines"].append(f"loader, {workers} worker{'s' if workers > 1 else ''}: {rate:.4g} images/s steady "
                                f"(batch {batch}, {wanted} batches, the first after {arrivals[0] - started:.1f} s)"
                                + (f"; {against}" if against else ""))
        if shm is not None and prefetched > shm.total:
            results["warnings"].append(f"{workers} workers prefetch {prefetched / 1e9:.2f} GB of batches into "
                                       f"/dev/shm, which holds {shm.total / 1e9:.2f} GB")
    results.update(images_dtype=str(images.dtype).removeprefix("torch."),
                   images_mb=significant(images.nbytes / 1e6, 3), masks_dtype=str(masks.dtype).removeprefix("torch."),
                   masks_mb=significant(masks.nbytes / 1e6, 3))
    results["lines"].append(f"loader batch: images {results['images_dtype']} {results['images_mb']:g} MB + masks "
                            f"{results['masks_dtype']} {results['masks_mb']:g} MB; /dev/shm "
                            + ("absent" if shm is None else f"{shm.total / 1e9:.2f} GB"))
    return results


def check_kill_and_resume(ctx: Context) -> dict[str, Any]:
    """tests/system/test_reliability.py's kill-and-resume check on this device: hot on the tiny profile, 2 epochs of
    2 steps, SIGKILLed after step 3 (mid-epoch) and started again, against an uninterrupted run.

    Two uninterrupted runs measure the device's own run-to-run noise (atomic adds in CUDA kernels make
    GPU runs differ in the last bits). Each history number of the resumed run must be within
    ``resume_tolerances`` of the uninterrupted run's: twice the two runs' difference, and at least the
    device's floor (on the GPU two runs can agree exactly by chance, and the resumed one still differ
    by a last bit; on the CPU the floor is 0, so the CPU demands exactness). Its per-step schedule
    (SAM's step index, the scaler's scale, the learning rate) must match exactly either way.
    """
    from segkit.profiles import get_profile
    from segkit.scenes import write_scenes

    profile = get_profile("tiny")
    if ctx.sizes.device == "gpu":
        profile = dataclasses.replace(profile, name="tiny-gpu", device="gpu", precision="amp_fp16")
    data = write_scenes(ctx.work / "kill-scenes", train_images=8, val_images=4)
    folder = ctx.work / "kill"
    traces = {}
    for name in ("uninterrupted", "again"):
        log = step_log_callback()
        train_observed("hot", profile, data, folder, name, KILL_RUN_DURATION, [log])
        traces[name] = log.steps
    killed = run_killed(profile, data, folder, "killed", kill_after_step=3)
    expect(killed == -signal.SIGKILL, f"the run to be killed ended with status {killed}, not by SIGKILL")
    before = len(run_history(folder / "killed"))
    expect(before == 1, f"the killed run had {before} evaluations recorded, expected the one of step 2")
    log = step_log_callback()
    with warnings.catch_warnings():  # Composer notes that the step log (new in this session) has no saved state
        warnings.filterwarnings("ignore", message=".*StepLog is not in the state_dict")
        resumed = train_observed("hot", profile, data, folder, "killed", KILL_RUN_DURATION, [log])
    expect(resumed.resumed, "the second start did not resume the killed run")
    schedule = ("step", "sam_step_index", "scale_start", "scale_end", "lr")
    reference = {s["step"]: [s[k] for k in schedule] for s in traces["uninterrupted"]}
    mismatched = [s["step"] for s in log.steps if reference.get(s["step"]) != [s[k] for k in schedule]]
    expect(not mismatched, f"after resuming, steps {mismatched} differ in SAM's index, the scale or the lr")
    noise = history_differences(run_history(folder / "uninterrupted"), run_history(folder / "again"))
    difference = history_differences(run_history(folder / "uninterrupted"), run_history(folder / "killed"))
    expect(noise is not None, "two uninterrupted runs have histories with other evaluations")
    expect(difference is not None, "the resumed run's history has other evaluations than the uninterrupted one")
    tolerances = resume_tolerances(difference, noise, ctx.sizes)
    over = {key: value for key, value in difference.items() if value > tolerances[key]}
    expect(not over, f"the resumed history differs from the uninterrupted one by {over}, more than the "
                     f"tolerances {({key: tolerances[key] for key in over})}; two uninterrupted runs differ by "
                     f"{({key: noise[key] for key in over})}")
    return {"evaluations_before_kill": before, "steps_after_resume": len(log.steps),
            "history_difference": max(difference.values(), default=0.0),
            "run_to_run_difference": max(noise.values(), default=0.0), "exact": not any(difference.values()),
            "differences": difference, "run_to_run": noise, "tolerances": tolerances}


def resume_tolerances(difference: dict[str, float], noise: dict[str, float], sizes: Sizes) -> dict[str, float]:
    """Per history key, how far the resumed run may be from the uninterrupted one: twice the difference
    between two uninterrupted runs, and at least the device's floor (``Sizes.resume_floor_*``)."""
    return {key: max(2 * noise.get(key, 0.0),
                     sizes.resume_floor_percent if key in PERCENT_KEYS else sizes.resume_floor_other)
            for key in difference}


def run_killed(profile, data: Path, folder: Path, run_name: str, kill_after_step: int) -> int:
    """Train in a child process that SIGKILLs itself after a step; return its exit status."""
    import torch

    options = {"profile": dataclasses.asdict(profile), "data": str(data), "folder": str(folder),
               "run_name": run_name, "kill_after_step": kill_after_step}
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # bit-identical CPU arithmetic
    done = subprocess.run([sys.executable, __file__, "--killed-run", json.dumps(options)], env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode not in (0, -signal.SIGKILL):
        print(done.stderr[-3000:])
    return done.returncode


def killed_run(options: dict[str, Any]) -> None:
    """The child of ``run_killed``: train hot and SIGKILL this process at the end of a step."""
    from composer import Callback

    from segkit.profiles import Profile

    class KillAfterStep(Callback):
        def batch_end(self, state, logger):
            if int(state.timestamp.batch) == options["kill_after_step"]:
                os.kill(os.getpid(), signal.SIGKILL)

    train_observed("hot", Profile(**options["profile"]), Path(options["data"]), Path(options["folder"]),
                   options["run_name"], KILL_RUN_DURATION, [KillAfterStep()])


def check_launcher(ctx: Context) -> dict[str, Any]:
    """``segkit train`` through Composer's launcher, as a multi-GPU job starts (``Launch.command``, what
    ``--gpus N`` runs): mild (EMA) for 2 batches, by name on the launch profile. Its model.pt holds the
    bare network's keys (no ``module.`` of DDP's wrapper), loads on this device and evaluates there to
    the run's last mIoU. On one GPU the launcher starts one process (NCCL, no DDP wrapper); on the CPU two
    gloo processes, which wrap the model in DDP."""
    import torch

    from segkit.inference import evaluate, load_model, module_device
    from segkit.runs import WEIGHTS_FILE, Run
    from segkit.spec import Launch

    processes, folder = ctx.sizes.launch_processes, ctx.work / "launcher"
    argv = ["train", "--recipe", "mild", "--profile", ctx.sizes.launch_profile, "--data", str(ctx.scenes),
            "--duration", "2ba", "--weights", "none", "--run-name", "launched", "--save-folder", str(folder)]
    command = Launch(gpus=processes).command(argv)
    log = ctx.work / "launcher.log"
    started = time.monotonic()
    try:
        status = run_bounded(command, max(10.0, ctx.seconds_left() - 10), log)
    except subprocess.TimeoutExpired as timeout:
        raise CheckFailed(f"the launched training did not end within {timeout.timeout:.0f} s: "
                          f"{last_lines(log)}") from None
    seconds = time.monotonic() - started
    expect(status == 0, f"the launched training ended with status {status}: {last_lines(log)}")
    run_folder = folder / "launched"
    keys = list(torch.load(run_folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    wrapped = [key for key in keys if key.startswith("module.")]
    expect(not wrapped, f"model.pt holds {len(wrapped)} keys of DDP's wrapper, like {wrapped[:1]}")
    run = Run.load(run_folder)
    expect(run.info["world_size"] == processes, f"the run's world size is {run.info['world_size']}, not {processes}")
    model, _ = load_model(run_folder, device=ctx.torch_device)
    where = module_device(model).type
    del model
    expect(where == ctx.torch_device, f"load_model put the weights on {where}, not {ctx.torch_device}")
    miou = evaluate(run_folder, device=ctx.torch_device)["miou"]
    expect(abs(miou - run.final["miou"]) <= ctx.sizes.eval_tolerance,
           f"model.pt evaluated again gives mIoU {miou:.4f}, the run's last evaluation {run.final['miou']:.4f}")
    return {"processes": processes, "world_size": run.info["world_size"], "launch_seconds": round(seconds, 1),
            "steps": run.history[-1]["step"], "model_keys": len(keys), "loaded_on": where,
            "miou": round(miou, 4), "run_miou": round(run.final["miou"], 4)}


def run_bounded(command: list[str], timeout_s: float, log: Path) -> int:
    """Run ``command`` in a process group of its own, its output into ``log``; the whole group (a
    launcher's children too) is killed when it overruns ``timeout_s`` or the check is interrupted."""
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=child_env(),
                                   start_new_session=True)
        try:
            return process.wait(timeout=timeout_s)
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise


def last_lines(log: Path, count: int = 3) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "no output"


def check_notebook(ctx: Context) -> dict[str, Any]:
    """notebooks/03_hot.ipynb under papermill with segkit's engine (``segkit.teaching.headless``), in a kernel of
    this Python, on the generated scenes with random initialization for a few batches: no cell shows an
    error, the training cell ends with one plotly figure, and that figure plots the run's metrics.json."""
    import nbformat
    import papermill

    from segkit.runs import METRICS_FILE, Run
    from segkit.teaching.headless import current_python_kernel, execute_notebook
    from segkit.teaching.notebooks import NOTEBOOKS_DIR
    from segkit.teaching.plots import PLOTLY_MIME

    save, output = ctx.work / "notebook-runs", ctx.work / f"{NOTEBOOK}.ipynb"
    parameters = {"profile": ctx.sizes.notebook_profile, "data_root": str(ctx.scenes), "weights": "none",
                  "duration": ctx.sizes.notebook_duration, "save_folder": str(save)}
    started = time.monotonic()
    failure = None
    # papermill skips, with a note, the parameter lines whose comment holds a second "=" (gpus, master_port);
    # that only leaves them out of its own listing (--help-notebook): they are injected all the same
    logging.getLogger("papermill.translators").addFilter(
        lambda record: not record.getMessage().startswith("Unable to parse line"))
    with current_python_kernel() as kernel:
        try:
            execute_notebook(NOTEBOOKS_DIR / f"{NOTEBOOK}.ipynb", output, parameters, kernel,
                             cell_timeout=max(10.0, ctx.seconds_left() - 10))
        except papermill.PapermillExecutionError as error:
            failure = f"cell In [{error.exec_count}] raised {error.ename}: {str(error.evalue).strip()[-300:]}"
    seconds = time.monotonic() - started
    if ctx.out is not None and output.is_file():
        shutil.copy(output, ctx.out / f"gpu_check_{NOTEBOOK}.ipynb")
    expect(failure is None, f"{NOTEBOOK}: {failure}")
    book = nbformat.read(output, as_version=4)
    code = [cell for cell in book.cells if cell.cell_type == "code"]
    errors = [cell.source.splitlines()[0] for cell in code if any(o.output_type == "error" for o in cell.outputs)]
    expect(not errors, f"{NOTEBOOK}: cells with an error output: {errors}")
    training = next(cell for cell in code if "job.train(" in cell.source)
    figures = [o for o in training.outputs if PLOTLY_MIME in o.get("data", {})]
    expect(len(figures) == 1, f"{NOTEBOOK}'s training cell has {len(figures)} plotly figures, not the final one")
    folders = [folder for folder in save.iterdir() if (folder / METRICS_FILE).is_file()]
    expect(len(folders) == 1, f"{NOTEBOOK} left {len(folders)} run folders in {save}, not its one run")
    run = Run.load(folders[0])
    traces = {trace.get("name"): trace for trace in figures[0]["data"][PLOTLY_MIME]["data"]}
    plotted = traces.get(f"{run.name} mIoU", {}).get("y")
    expect(plotted == [entry["miou"] for entry in run.history],
           f"the final figure's mIoU trace is {plotted}, not metrics.json's {[e['miou'] for e in run.history]}")
    steps = int(ctx.sizes.notebook_duration.removesuffix("ba"))
    expect(run.status == "finished" and run.history[-1]["step"] == steps,
           f"the notebook's run is {run.status} after step {run.history[-1]['step']}, not finished after {steps}")
    return {"seconds": round(seconds, 1), "run": run.name, "device": run.info["profile"]["device"],
            "world_size": run.info["world_size"], "steps": steps, "miou": round(run.final["miou"], 4),
            "images_per_second": run.final.get("images_per_second"), "run_wall_time_s": run.final.get("wall_time"),
            "code_cells": len(code), "figure_traces": len(traces)}


# --- the knee of the laptop problem on this device ---------------------------------------------------

def knee_profile(sizes: Sizes):
    """The laptop problem: the ``knee_profile`` (cpu on the GPU mode), moved to CUDA in fp32 on the GPU."""
    from segkit.profiles import get_profile

    base = get_profile(sizes.knee_profile)
    if sizes.device == "gpu":
        return dataclasses.replace(base, name=f"{base.name}-on-gpu", device="gpu", precision="fp32")
    return base


def knee_runs(profile, sizes: Sizes) -> list[dict[str, Any]]:
    """Every run of the knee, longest first: per multiplier of the profile's baseline length (its epochs
    as ``segkit.recipes.scale`` gives them), the baseline full and compressed into ``KNEE_SHARE`` of the
    epochs (the cosine schedule compressed with it), each on every seed."""
    from segkit import recipes

    epochs = recipes.scale(recipes.baseline(), profile).epochs
    runs = []
    for multiplier in sizes.knee_multipliers:
        full = multiplier * epochs
        for length, count in (("full", full), ("short", max(1, round(KNEE_SHARE * full)))):
            runs += [{"name": f"x{multiplier}-{length}-seed{seed}", "multiplier": multiplier, "length": length,
                      "epochs": count, "seed": seed} for seed in sizes.knee_seeds]
    return sorted(runs, key=lambda run: -run["epochs"])


def knee_child(options: dict[str, Any]) -> None:
    """A child of the knee part: train its runs one after the other, each writing its record (final mIoU,
    history, and when it was called, started fitting and finished each evaluation) as it ends."""
    from composer import Callback

    from segkit.engine import train
    from segkit.profiles import Profile
    from segkit.spec import run_spec

    class Clock(Callback):
        def __init__(self):
            self.started_at: float | None = None
            self.evaluated_at: list[float] = []

        def fit_start(self, state, logger):
            self.started_at = time.monotonic()

        def eval_after_all(self, state, logger):  # after segkit's checkpoint: an epoch's whole cost
            self.evaluated_at.append(time.monotonic())

    profile = Profile(**options["profile"])
    for run in options["runs"]:
        clock, called = Clock(), time.monotonic()
        result = train(run_spec("baseline", profile, "scenes", seed=run["seed"], duration=f"{run['epochs']}ep"),
                       run_name=run["name"], save_folder=options["folder"], callbacks=[clock], print_progress=False,
                       progress_bar=False)
        record = {**run, "miou": result.miou, "wall_time": result.wall_time, "history": result.run.history,
                  "called": called, "started": clock.started_at, "evaluated": clock.evaluated_at}
        Path(options["results"], f"{run['name']}.json").write_text(json.dumps(record))


def child_env(**extra: str) -> dict[str, str]:
    """A child's environment: this one, with the repository importable."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_knee_children(profile, assignments: list[list[dict[str, Any]]], folder: Path, deadline: float
                      ) -> tuple[list[int | None], list[float]]:
    """Start one child per list of runs (``knee_child``), all at once, each computing with its share of the
    cores; wait until they end or ``deadline`` (time.monotonic()), when the rest are killed with their
    process groups. Their exit statuses (None: killed at the deadline) and when each was started."""
    threads = max(1, (os.cpu_count() or 1) // len(assignments))
    env = child_env(OMP_NUM_THREADS=str(threads))
    (folder / "results").mkdir(parents=True, exist_ok=True)
    children: list[subprocess.Popen] = []
    spawned: list[float] = []
    killed: set[int] = set()
    try:
        for runs in assignments:
            options = {"profile": dataclasses.asdict(profile), "runs": runs, "folder": str(folder / "runs"),
                       "results": str(folder / "results")}
            with (folder / f"child-{runs[0]['name']}.log").open("w") as log:
                spawned.append(time.monotonic())
                children.append(subprocess.Popen([sys.executable, __file__, "--knee-runs", json.dumps(options)],
                                                 stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
        while any(child.poll() is None for child in children) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:  # the deadline, or the check's alarm: no child outlives the part
        for index, child in enumerate(children):
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):  # it may end between the poll and the kill
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                killed.add(index)
    return [None if index in killed else child.returncode for index, child in enumerate(children)], spawned


def knee_records(folder: Path) -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted((folder / "results").glob("*.json"))}


def knee_failures(assignments: list[list[dict[str, Any]]], statuses: list[int | None], folder: Path) -> list[str]:
    """One line per child that ended with an error (not one killed at the deadline)."""
    failures = []
    for runs, status in zip(assignments, statuses, strict=True):
        if status not in (0, None):
            log = folder / f"child-{runs[0]['name']}.log"
            failures.append(f"the child training {runs[0]['name']} ended with status {status}: {last_lines(log)}")
    return failures


def knee_calibration(profile, sizes: Sizes, processes: int, folder: Path, deadline: float) -> dict[str, Any]:
    """Speed at ``processes`` parallel children, each training the baseline for ``knee_calibration_epochs``:
    the slowest child's start-up (spawn to training), its first epoch's extra cost (building the trainer,
    decoding the scenes), and its later epochs' seconds, each with its evaluation and checkpoint."""
    runs = [[{"name": f"calibrate-p{processes}-{index}", "multiplier": 0, "length": "calibration",
              "epochs": sizes.knee_calibration_epochs, "seed": 17}] for index in range(processes)]
    started = time.monotonic()
    statuses, spawned = run_knee_children(profile, runs, folder, deadline)
    failures = knee_failures(runs, statuses, folder)
    expect(not failures, "; ".join(failures))
    expect(all(status == 0 for status in statuses), f"the calibration at {processes} processes did not end in time")
    records = knee_records(folder)
    timings = []
    for [run], spawn in zip(runs, spawned, strict=True):
        record = records[run["name"]]
        evaluated = record["evaluated"]
        epoch_s = (evaluated[-1] - evaluated[0]) / (len(evaluated) - 1)
        timings.append({"start_s": record["called"] - spawn, "epoch_s": epoch_s,
                        "first_epoch_extra_s": max(0.0, evaluated[0] - record["called"] - epoch_s)})
    slowest = {key: max(t[key] for t in timings) for key in timings[0]}
    steps_each = profile.scenes_train_images // profile.global_batch_size / slowest["epoch_s"]
    return {"processes": processes, **{key: round(value, 3) for key, value in slowest.items()},
            "steps_per_s_each": significant(steps_each, 3), "steps_per_s_all": significant(processes * steps_each, 4),
            "seconds": round(time.monotonic() - started, 1)}


def knee_plan(runs: list[dict[str, Any]], calibrations: list[dict[str, Any]], seconds: float) -> dict[str, Any] | None:
    """The processes and the multipliers to run in ``seconds``: for each calibrated count, the runs
    dealt longest first to the least loaded child, their time estimated from the calibration (start-up,
    then per run the first epoch's extra and its epochs), with ``KNEE_SAFETY`` to spare; the largest
    multipliers are left out until it fits. The plan that keeps the most multipliers wins, then the
    quickest. None when not even the smallest fits."""
    multipliers = sorted({run["multiplier"] for run in runs})
    best = None
    for calibration in calibrations:
        for keep in range(len(multipliers), 0, -1):
            chosen = [run for run in runs if run["multiplier"] in multipliers[:keep]]
            loads = [calibration["start_s"]] * min(calibration["processes"], len(chosen))
            assignments: list[list[dict[str, Any]]] = [[] for _ in loads]
            for run in chosen:  # runs are longest first
                child = loads.index(min(loads))
                assignments[child].append(run)
                loads[child] += calibration["first_epoch_extra_s"] + run["epochs"] * calibration["epoch_s"]
            if max(loads) * KNEE_SAFETY <= seconds:
                plan = {"processes": len(assignments), "multipliers": multipliers[:keep],
                        "estimated_s": round(max(loads), 1), "assignments": assignments}
                if best is None or (keep, -max(loads)) > (len(best["multipliers"]), -best["estimated_s"]):
                    best = plan
                break
    return best


def knee_summary(profile, runs: list[dict[str, Any]], records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per multiplier: each seed's final mIoU full and compressed, and the compressed over the full (the
    means over the seeds that have both; each seed's own ratio beside it)."""
    steps_per_epoch = profile.scenes_train_images // profile.global_batch_size
    summary = {}
    for multiplier in sorted({run["multiplier"] for run in runs}):
        mine = [run for run in runs if run["multiplier"] == multiplier]
        epochs = {run["length"]: run["epochs"] for run in mine}
        miou = {length: {run["seed"]: records[run["name"]]["miou"] for run in mine
                         if run["length"] == length and run["name"] in records} for length in ("full", "short")}
        both = sorted(set(miou["full"]) & set(miou["short"]))
        ratio = (sum(miou["short"][seed] for seed in both) / sum(miou["full"][seed] for seed in both)
                 if both and sum(miou["full"][seed] for seed in both) > 0 else None)
        walls = [records[run["name"]]["wall_time"] for run in mine
                 if run["length"] == "full" and run["name"] in records]
        summary[f"x{multiplier}"] = {
            "epochs_full": epochs["full"], "epochs_short": epochs["short"],
            "steps_full": epochs["full"] * steps_per_epoch, "steps_short": epochs["short"] * steps_per_epoch,
            "full_miou": miou["full"], "short_miou": miou["short"],
            "seeds_with_both": both, "ratio": None if ratio is None else round(ratio, 4),
            "ratios": {seed: round(miou["short"][seed] / miou["full"][seed], 4) for seed in both if miou["full"][seed]},
            "past_knee": ratio is not None and ratio >= KNEE_RATIO,
            "full_run_wall_s": round(sum(walls) / len(walls), 1) if walls else None}
    return summary


def knee_candidate(profile, summary: dict[str, Any], calibrations: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The shortest setting past the knee as a candidate ``gpu-scenes`` profile, with its measured time."""
    from segkit import recipes

    past = [(key, entry) for key, entry in summary.items() if entry["past_knee"]]
    if not past:
        return None
    key, entry = min(past, key=lambda item: item[1]["epochs_full"])
    alone = next((c for c in calibrations if c["processes"] == 1), None)
    return {"name": "gpu-scenes", "from": profile.name, "device": profile.device, "precision": profile.precision,
            "baseline_epochs": entry["epochs_full"], "steps": entry["steps_full"],
            "epoch_scale": round(entry["epochs_full"] / recipes.baseline().epochs, 4), "setting": key,
            "ratio": entry["ratio"], "full_miou": entry["full_miou"], "run_wall_s": entry["full_run_wall_s"],
            "alone_s_estimate": None if alone is None else round(
                alone["start_s"] + alone["first_epoch_extra_s"] + entry["epochs_full"] * alone["epoch_s"], 1)}


def check_knee(ctx: Context) -> dict[str, Any]:
    """The laptop problem's budget curve where this device affords it (docs/laptop-regime.md's knee: the
    baseline compressed into 20% of its epochs reaches 95% of the full baseline's mIoU).

    The laptop problem is the ``knee_profile`` (the cpu profile: ResNet-10 at 64 px from the
    scenes-pretrained backbone, batch 8, 200 built-in scenes; on the GPU on CUDA in fp32) with the
    baseline recipe. Its pretrained backbone and scenes are made first, in this process (children would
    race for the cache). Then the speed of 1, 6 and 12 parallel children is calibrated, the plan keeps
    what fits the part's time left (``knee_plan``), and the runs train, longest first, in parallel
    children; a run still training at the part's deadline is killed and reported as unfinished. Every
    run's history goes to gpu_check_knee.json beside the JSON."""
    from segkit.pretraining import pretrained_backbone
    from segkit.scenes import builtin_scenes

    started = time.monotonic()
    deadline = min(started + ctx.sizes.knee_budget_s, ctx.deadline - 10)
    profile = knee_profile(ctx.sizes)
    folder = ctx.work / "knee"
    builtin_scenes(train_images=profile.scenes_train_images, val_images=profile.scenes_val_images)
    if profile.weights == "scenes":
        pretrained_backbone(profile.backbone, log=lambda line: None)
    prepared_s = time.monotonic() - started
    calibrations = [knee_calibration(profile, ctx.sizes, processes, folder, deadline)
                    for processes in ctx.sizes.knee_processes]
    runs = knee_runs(profile, ctx.sizes)
    left = deadline - time.monotonic()
    plan = knee_plan(runs, calibrations, left)
    results: dict[str, Any] = {
        "profile": profile.name, "prepare_s": round(prepared_s, 1), "calibration": calibrations,
        "lines": ["knee calibration, steps/s (each evaluation and checkpoint in), each child / all: " + "; ".join(
            f"{c['processes']} {'process' if c['processes'] == 1 else 'processes'} {c['steps_per_s_each']:g} / "
            f"{c['steps_per_s_all']:g} (start-up {c['start_s']:.1f} s)" for c in calibrations)],
        "warnings": []}
    if plan is None:
        smallest = min(run["multiplier"] for run in runs)
        results.update(plan=None, runs_planned=0, runs_finished=0)
        results["lines"].append(f"knee plan: nothing fits the {left:.0f} s left, not even x{smallest}")
        results["warnings"].append(f"no run of the knee fits the {left:.0f} s left after calibrating")
        return results
    kept = [run for run in runs if run["multiplier"] in plan["multipliers"]]
    left_out = sorted({run["multiplier"] for run in runs} - set(plan["multipliers"]))
    results["lines"].append(
        f"knee plan: {plan['processes']} processes, " + ", ".join(f"x{m}" for m in plan["multipliers"])
        + f" ({len(kept)} runs), about {plan['estimated_s']:.0f} s of the {left:.0f} s left"
        + (f"; left out: {', '.join(f'x{m}' for m in left_out)}" if left_out else ""))
    runs_started = time.monotonic()
    statuses, _ = run_knee_children(profile, plan["assignments"], folder, deadline)
    runs_s = time.monotonic() - runs_started
    failures = knee_failures(plan["assignments"], statuses, folder)
    records = knee_records(folder)
    unfinished = [run["name"] for run in kept if run["name"] not in records]
    if unfinished:
        results["warnings"].append(f"{len(unfinished)} runs were still training at the part's deadline: "
                                   f"{', '.join(unfinished)}")
    summary = knee_summary(profile, kept, records)
    candidate = knee_candidate(profile, summary, calibrations)
    if ctx.out is not None:
        (ctx.out / "gpu_check_knee.json").write_text(json.dumps(
            {"profile": dataclasses.asdict(profile), "calibration": calibrations, "plan": plan, "summary": summary,
             "candidate": candidate, "runs": records}, indent=1))
    for key, entry in summary.items():
        ratio = "-" if entry["ratio"] is None else f"{entry['ratio']:.3f}"
        full = [f"{v:.2f}" for v in entry["full_miou"].values()]
        short = [f"{v:.2f}" for v in entry["short_miou"].values()]
        results["lines"].append(f"knee {key}: {entry['steps_full']} steps full, {entry['steps_short']} at 20%; mIoU "
                                f"full {', '.join(full) or '-'}, 20% {', '.join(short) or '-'}: 20%/full {ratio}"
                                f" (knee at {KNEE_RATIO})")
    ratios = [entry["ratio"] for entry in summary.values() if entry["ratio"] is not None]
    if candidate is not None:
        results["lines"].append(
            f"CANDIDATE gpu-scenes: the {profile.name} profile with the baseline at {candidate['baseline_epochs']} "
            f"epochs ({candidate['steps']} steps, epoch_scale {candidate['epoch_scale']:g}): 20%/full "
            f"{candidate['ratio']:.3f}; a full run took {candidate['run_wall_s']} s beside "
            f"{plan['processes'] - 1} others, about {candidate['alone_s_estimate']} s alone")
    else:
        results["lines"].append("knee: no setting reached 20%/full >= " + f"{KNEE_RATIO}" + (
            f" (the best {max(ratios):.3f})" if ratios else " (no setting finished both lengths)"))
    results.update(plan={key: value for key, value in plan.items() if key != "assignments"},
                   runs_planned=len(kept), runs_finished=len(kept) - len(unfinished), runs_s=round(runs_s, 1),
                   best_ratio=max(ratios) if ratios else None, past_knee=candidate is not None, summary=summary,
                   candidate=candidate, histories_file="gpu_check_knee.json" if ctx.out else None,
                   failures=failures)
    return results


def run_history(folder: Path) -> list[dict[str, Any]]:
    from segkit.runs import Run

    return [{k: v for k, v in entry.items() if k not in TIMINGS} for entry in Run.load(folder).history]


def history_differences(first: list[dict], second: list[dict]) -> dict[str, float] | None:
    """Per numeric key, the largest absolute difference between two histories; None if their entries
    differ in number, keys or steps."""
    if [sorted(e) for e in first] != [sorted(e) for e in second] or \
            [e["step"] for e in first] != [e["step"] for e in second]:
        return None
    differences: dict[str, float] = {}
    for a, b in zip(first, second, strict=True):
        for key in a:
            if isinstance(a[key], (int, float)) and isinstance(b[key], (int, float)):
                differences[key] = max(differences.get(key, 0.0), float(abs(a[key] - b[key])))
    return differences


def significant(value: float, digits: int = 4) -> float:
    """``value`` to ``digits`` significant digits (a CPU's epoch_scale is tiny, a GPU's step time is not)."""
    return float(f"{value:.{digits}g}")


def _release_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


#: The parts, in the order they run (evaluate reads hot's run; throughput, profiler, ab and gpu-profile use
#: hot's microbatch when it ran; the loader compares itself with the speeds measured before it).
PARTS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "hot": check_hot,
    "evaluate": check_evaluate,
    "throughput": check_throughput,
    "profiler": check_profiler,
    "ab": check_ab,
    "gpu-profile": check_gpu_profile,
    "loader": check_loader,
    "launcher": check_launcher,
    "notebook": check_notebook,
    "kill-resume": check_kill_and_resume,
    "knee": check_knee,
}


# --- running the check ------------------------------------------------------------------------------

def environment(sizes: Sizes) -> dict[str, Any]:
    """Versions; raises CannotRun naming what is missing for the check to run at all."""
    found = {"python": platform.python_version()}
    for module in ("torch", "torchvision", "composer"):
        try:
            found[module] = __import__(module).__version__
        except (ImportError, RuntimeError, OSError) as error:  # a torchvision built for another torch raises these
            hint = {"torch": "the check needs the machine's own torch",
                    "torchvision": "it must be the build for this torch",
                    "composer": "install the bundle first: bash bench/gpu_check.sh"}[module]
            raise CannotRun(f"{module} is missing or broken ({error}); {hint}") from None
    for module in ("papermill", "ipykernel"):  # the notebook part's; without them only that part fails
        try:
            found[module] = __import__(module).__version__
        except ImportError:
            found[module] = "missing"
    import torch

    if sizes.device == "gpu" and not torch.cuda.is_available():
        raise CannotRun("no CUDA device; run the reduced check with --cpu")
    return found


def device_name(sizes: Sizes) -> str:
    import torch

    return torch.cuda.get_device_name() if sizes.device == "gpu" else f"CPU ({os.cpu_count()} cores)"


def run_part(name: str, part: Callable[[Context], dict[str, Any]], ctx: Context) -> dict[str, Any]:
    """Run one part within the budget; its result with a status (PASS, FAIL or SKIP) and reason."""
    needed = ctx.sizes.part_seconds[name]
    if ctx.seconds_left() < needed:
        return {"status": "SKIP", "seconds": 0,
                "reason": f"{ctx.seconds_left():.0f} s of the budget left, it needs about {needed:g} s"}
    started = time.monotonic()
    try:
        result = {"status": "PASS", **part(ctx)}
        failures = result.pop("failures", [])
        if failures:  # a part that failed but measured: FAIL, its numbers kept
            result.update(status="FAIL", reason="; ".join(failures))
    except CheckFailed as failure:
        result = {"status": "FAIL", "reason": str(failure)}
    except CannotRun as reason:
        result = {"status": "SKIP", "reason": str(reason)}
    except Exception as error:  # a crash is a failure of this part; the others still run
        traceback.print_exc(file=sys.stdout)
        last_line = (str(error).strip().splitlines() or [""])[-1]
        result = {"status": "FAIL", "reason": f"{type(error).__name__}: {last_line}"}
    finally:
        _release_memory()
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def summary_line(name: str, result: dict[str, Any]) -> str:
    details = result.get("reason") or ", ".join(f"{k} {v}" for k, v in result.items()
                                                if k not in ("status", "seconds") and not isinstance(v, (dict, list)))
    return f"{result['status']} {name} ({result['seconds']:g} s): {details}"


def notes(name: str, result: dict[str, Any]) -> list[str]:
    """The lines a part prints after its summary: its warnings, and lines of its own (the MFU)."""
    return [f"WARNING {name}: {warning}" for warning in result.get("warnings", [])] + result.get("lines", [])


def save_report(report: dict[str, Any], path: Path | None) -> None:
    """Write the results so far, atomically: a check killed at any moment leaves the parts that ended."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(report, indent=1))
    os.replace(partial, path)


def check(sizes: Sizes, budget_s: float, parts: list[str] | None = None, json_path: Path | None = None
          ) -> dict[str, Any]:
    """Run the named parts (default all, always in ``PARTS``' order); the results, as the JSON file holds
    them, which is rewritten before the first part and after every part."""
    started = time.monotonic()
    parts = [name for name in PARTS if name in (parts or PARTS)]
    report: dict[str, Any] = {"mode": sizes.device, "device": None, "budget_s": budget_s, "parts_asked": parts,
                              "part_seconds_guessed": sizes.part_seconds, "running": None, "parts": {}}

    def out_of_time(signum, frame):
        raise OutOfTime

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(max(1, int(budget_s)))
    current = "setup"
    try:
        report["environment"] = environment(sizes)
        with tempfile.TemporaryDirectory(prefix="segkit-gpu-check-") as work:
            train_images, val_images, min_size, max_size = sizes.scenes
            # generated before CUDA starts (device_name starts it): the generating processes are forked
            needs_scenes = any(name in SCENE_PARTS for name in parts)
            scenes = (make_scenes(Path(work) / "scenes", train_images, val_images, min_size, max_size)
                      if needs_scenes else None)
            report["device"] = device_name(sizes)
            print(f"gpu_check: device {report['device']} ({sizes.device} mode); "
                  + ", ".join(f"{k} {v}" for k, v in report["environment"].items())
                  + f"; parts {','.join(parts)}; budget {budget_s:g} s", flush=True)
            save_report(report, json_path)
            print(f"generated {train_images} + {val_images} scenes of {min_size}-{max_size} px in "
                  f"{time.monotonic() - started:.0f} s" if needs_scenes else "no scenes generated: no part asked for "
                  "reads them", flush=True)
            ctx = Context(sizes, scenes, Path(work), deadline=started + budget_s,
                          out=json_path.parent if json_path else None, measured={"device_name": report["device"]})
            for name in parts:
                current = report["running"] = name
                save_report(report, json_path)
                report["parts"][name] = run_part(name, PARTS[name], ctx)
                report["running"] = None
                print("\n".join([summary_line(name, report["parts"][name]), *notes(name, report["parts"][name])]),
                      flush=True)
                save_report(report, json_path)
    except CannotRun as reason:
        report["parts"]["setup"] = {"status": "FAIL", "reason": str(reason), "seconds": 0}
        print(f"FAIL setup: {reason}")
    except OutOfTime:
        report["parts"][current] = {"status": "FAIL", "reason": f"the time budget of {budget_s:g} s ran out",
                                    "seconds": round(time.monotonic() - started, 1)}
        print(f"FAIL {current}: the time budget of {budget_s:g} s ran out")
        for name in parts:
            report["parts"].setdefault(name, {"status": "SKIP", "reason": "the time budget ran out before it",
                                              "seconds": 0})
    finally:
        signal.alarm(0)
    report["running"] = None
    report["seconds"] = round(time.monotonic() - started, 1)
    report["passed"] = all(part["status"] != "FAIL" for part in report["parts"].values())
    save_report(report, json_path)
    return report


def recap(report: dict[str, Any]) -> list[str]:
    """The closing lines: the device, every warning and MFU line again, and the counts."""
    statuses = [part["status"] for part in report["parts"].values()]
    counts = {status: statuses.count(status) for status in ("PASS", "FAIL", "SKIP")}
    lines = [f"device: {report['device']}"]
    for name, result in report["parts"].items():
        lines += notes(name, result)
    return [*lines, f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped "
                    f"in {report['seconds']:g} s"]


def parse_parts(text: str) -> list[str]:
    """``--parts``: comma-separated part names, or ``all``."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return list(PARTS)
    unknown = [name for name in names if name not in PARTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown part(s) {', '.join(unknown) or '(none)'}; choose from "
                                         f"{', '.join(PARTS)} (or all)")
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="the reduced mode: toy sizes, fp32, on the CPU")
    parser.add_argument("--parts", type=parse_parts, default=None,
                        help=f"comma-separated parts to run, in this order whatever the order given: "
                             f"{','.join(PARTS)} (default all)")
    parser.add_argument("--call", choices=list(CALLS), default=None,
                        help="the parts of one of the two device calls: " + "; ".join(
                            f"{call}: {','.join(names)}" for call, names in CALLS.items()))
    parser.add_argument("--budget", type=float, default=None,
                        help=f"seconds for the whole check (default {GPU_SIZES.budget_s:g}, "
                             f"with --cpu {CPU_SIZES.budget_s:g})")
    parser.add_argument("--knee-budget", type=float, default=None,
                        help=f"seconds for the knee part (default {GPU_SIZES.knee_budget_s:g}, with --cpu "
                             f"{CPU_SIZES.knee_budget_s:g}); more lets longer settings in, in a call of its own")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this file after every part")
    parser.add_argument("--killed-run", default=None, help=argparse.SUPPRESS)  # the kill/resume part's child
    parser.add_argument("--compiled-step", default=None, help=argparse.SUPPRESS)  # the torch.compile A/B's child
    parser.add_argument("--knee-runs", default=None, help=argparse.SUPPRESS)  # the knee part's children
    args = parser.parse_args()
    children = {"killed_run": killed_run, "compiled_step": compiled_step_child, "knee_runs": knee_child}
    for option, child in children.items():
        if getattr(args, option):
            child(json.loads(getattr(args, option)))
            return 0
    if args.parts is not None and args.call is not None:
        parser.error("give --parts or --call, not both")
    sizes = CPU_SIZES if args.cpu else GPU_SIZES
    if args.knee_budget is not None:
        sizes = dataclasses.replace(sizes, knee_budget_s=args.knee_budget,
                                    part_seconds={**sizes.part_seconds, "knee": args.knee_budget})
    parts = list(CALLS[args.call]) if args.call else args.parts
    report = check(sizes, args.budget or sizes.budget_s, parts, args.json)
    print("\n".join(recap(report)))
    if args.json:
        print(f"results: {args.json}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

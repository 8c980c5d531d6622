"""The GPU check: the reference job's mechanics and speed on one GPU, in about six minutes.

Meant for a machine with Python 3.12 and torch but no Composer, no Jupyter and no network
(bench/gpu_check.sh installs the wheels of bench/gpu_bundle.py first). It trains on generated scenes
in the ADEChallengeData2016 layout, with ADE20k's 150 classes (the reference model's head) and random
initialization (no network, so no ImageNet weights: speed and mechanics are checked, not accuracy).
The parts, in the order they run:

    hot          the a100 profile's hot recipe for 20 steps: AMP, channels-last, EMA, SAM through the
                 gradient scaler, MixUp, automatic microbatching. The loss is finite and falls, and every
                 step whose first gradients were finite ran SAM's second forward-backward pass (counted as
                 Composer's BEFORE_TRAIN_BATCH events, one per pass). Also: images/s, peak memory, the
                 microbatch size found, and one reference epoch on 8 GPUs projected from the images/s
    evaluate     the hot run's model.pt loads on this device and evaluates there, single-scale (its mIoU
                 is the run's last) and with test-time augmentation; images/s of each
    throughput   the model FLOPs utilisation (MFU) of a plain training step of ResNet-101 OS8 at 512 px
                 in bf16 and in fp16 (FLOPs: the forward counted by torch.utils.flop_counter, times 3)
                 against the GPU's dense peak, named in the output; one MFU line per precision
    gpu-profile  the first steps of the gpu profile, their time against the profile's throughput
                 assumption (segkit.profiles.GPU_THROUGHPUT_ASSUMPTION), and the epoch_scale the
                 measured speed would give; a FLOP count that differs from segkit's constant under
                 this torch is a WARNING, not a failure
    launcher     `segkit train` through Composer's launcher (on the GPU one process, NCCL; on the CPU two
                 gloo processes) for 2 batches; its model.pt holds the bare network's keys, loads and
                 evaluates on this device
    notebook     notebooks/03_hot.ipynb under papermill with segkit's engine for a few batches: no error
                 output, and the training cell ends with the plotly figure of the run's metrics.json
    kill-resume  a run SIGKILLed mid-epoch and started again has the history of an uninterrupted run
                 (tests/test_reliability.py's check, on this device: AMP's scaler, CUDA's generators),
                 exactly on the CPU, within the device's run-to-run noise (with a floor) on the GPU

Each part prints PASS, FAIL or SKIP with its reason; the JSON results are rewritten after every part
(so a check killed half-way still leaves what ran), and the script exits 1 if a part failed.
``--parts`` runs a subset, still in the order above (evaluate reads the hot part's run, so it needs
hot in the same invocation). A time budget guards the whole: a part that would not fit is skipped,
the hot run stops early when slow, and an alarm ends a part that overruns the budget.

    bash bench/gpu_check.sh                        # on the GPU machine; log and JSON in $OUT
    bash bench/gpu_check.sh --parts hot,evaluate   # a subset
    .venv/bin/python bench/gpu_check.py --cpu      # here: the same logic at toy sizes, fp32
"""

from __future__ import annotations

import argparse
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: One reference epoch: ADE20k's training images, and the GPUs of the reference job.
REFERENCE_EPOCH_IMAGES = 20_210
REFERENCE_GPUS = 8
#: Dense tensor-core peaks in TFLOP/s for bf16 and fp16 (equal on these), from NVIDIA's datasheets,
#: by a part of the device name; the first match counts, so the more specific names come first.
GPU_PEAK_TFLOPS = {"H100 PCIe": 756.5, "H100 NVL": 835.5, "H100": 989.4, "H200 NVL": 835.5, "H200": 989.4,
                   "A100": 312.0}
#: Microbatch of the MFU's step when the hot part found none: the reference's per-GPU batch (128 over 8).
REFERENCE_DEVICE_BATCH = 16
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


@dataclass(frozen=True)
class Sizes:
    """How big each part is: the GPU's sizes, or toy sizes for the CPU mode."""

    device: str  # "gpu" or "cpu"
    budget_s: float  # default wall-clock budget of the whole check
    scenes: tuple[int, int, int, int]  # generated set: training images, validation images, min and max side
    hot_steps: int  # steps of the hot recipe
    hot_time_cap_s: float  # the hot run stops early after this much training
    profile_steps: int  # steps of the gpu profile (one epoch of the generated set: the first 2 are not timed)
    timed_steps: int  # training steps timed per precision for the MFU
    mfu_precisions: tuple[str, ...]  # autocast precisions of the MFU
    eval_tolerance: float  # mIoU points by which model.pt evaluated again may differ from the run's last mIoU
    resume_floor_percent: float  # kill-resume: least tolerance on mIoU and pixel accuracy (points)
    resume_floor_other: float  # kill-resume: least tolerance on the other history numbers (losses)
    launch_profile: str  # profile of the launcher part's `segkit train` (by name, as a user types it)
    launch_processes: int  # processes Composer's launcher starts
    notebook_profile: str  # notebook 03's profile parameter
    notebook_duration: str  # notebook 03's duration parameter
    part_seconds: dict[str, float]  # about how long each part takes: a part is skipped if less is left


#: Each part's seconds as measured on an H200 on 2026-11-30 (docs/gpu-check/), where the scenes took about
#: 30 s on 16 cores and the bundle's install about 15 s: about 340 s in all. The tolerances: the two
#: evaluations of model.pt differ in batch composition under fp16 autocast (0.0007 points there); the
#: resume floors allow a few of the kill-resume run's 4,096 validation pixels to flip, and a loss to move
#: in its third decimal, when two uninterrupted runs happen to agree exactly (there they differed by 1.0).
GPU_SIZES = Sizes(
    device="gpu", budget_s=420, scenes=(512, 128, 512, 640), hot_steps=20, hot_time_cap_s=60, profile_steps=4,
    timed_steps=8, mfu_precisions=("bf16", "fp16"), eval_tolerance=1.0, resume_floor_percent=0.5,
    resume_floor_other=0.01, launch_profile="a100", launch_processes=1, notebook_profile="a100",
    notebook_duration="4ba",
    part_seconds={"hot": 70, "evaluate": 15, "throughput": 15, "gpu-profile": 20, "launcher": 100, "notebook": 65,
                  "kill-resume": 30},
)
#: On the CPU the tolerances are zero where the arithmetic repeats exactly (one thread count, fp32).
CPU_SIZES = Sizes(
    device="cpu", budget_s=300, scenes=(16, 4, 96, 144), hot_steps=8, hot_time_cap_s=60, profile_steps=3,
    timed_steps=3, mfu_precisions=("fp32",), eval_tolerance=0.02, resume_floor_percent=0.0,
    resume_floor_other=0.0, launch_profile="tiny", launch_processes=2, notebook_profile="tiny",
    notebook_duration="2ba",
    part_seconds={"hot": 15, "evaluate": 3, "throughput": 5, "gpu-profile": 10, "launcher": 20, "notebook": 30,
                  "kill-resume": 25},
)


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
    scenes: Path  # the generated set
    work: Path  # run folders and the small set of the kill/resume part
    deadline: float  # time.monotonic() at which the budget ends
    out: Path | None = None  # where the JSON goes; the executed notebook is copied there too
    # what the parts share: "device_name"; from hot: "microbatch" (its search's), "hot_run" (the run folder),
    # "hot_stopped_early"
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


def data_wait_fraction(steps: list[dict[str, Any]]) -> float:
    """The share of all steps' time spent waiting for data (epoch starts included)."""
    return round(sum(step["waited_s"] for step in steps) / sum(step["wall_s"] for step in steps), 3)


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

def forward_flops_per_image(profile, num_classes: int = 150) -> float:
    """FLOPs of one image's forward pass through the profile's model (``segkit.model.forward_flops``)."""
    from segkit.model import forward_flops

    return forward_flops(profile, num_classes, profile.image_size)


def time_training_step(profile, precision: str, batch: int, steps: int, num_classes: int = 150) -> float:
    """Seconds per plain training step (forward, loss, backward, SGD step) of the profile's model on
    random data at ``batch``, channels-last, under autocast to ``precision`` ("bf16", "fp16", "fp32")."""
    import torch

    from segkit.losses import SegmentationLoss
    from segkit.model import build_model

    device = torch.device("cuda" if profile.device == "gpu" else "cpu")
    model = build_model(profile, num_classes)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    images = torch.randn(batch, 3, profile.image_size, profile.image_size, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    masks = torch.randint(-1, num_classes, (batch, profile.image_size, profile.image_size), device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    loss_fn = SegmentationLoss()

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=precision != "fp32"):
            loss = loss_fn(model(images), masks)["total"]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(2):  # warm-up: kernels chosen, memory allocated
        step()
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    return (time.perf_counter() - started) / steps


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
    return {"steps": len(steps), "stopped_early": log.stopped_early, "loss_first_third": round(first, 4),
            "loss_last_third": round(last, 4), **sam, **end, "images_per_second": round(rate, 2),
            "step_s": round(profile.global_batch_size / rate, 3), "data_wait_fraction": data_wait_fraction(steps),
            "projected_reference_epoch_minutes_on_8_gpus": round(projected_epoch_minutes(rate), 2),
            "losses": [round(loss, 4) for loss in losses]}


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


def check_throughput(ctx: Context) -> dict[str, Any]:
    """MFU of a plain training step of the a100 profile's model in each precision, against the GPU's
    datasheet peak (on the CPU, or a GPU not in ``GPU_PEAK_TFLOPS``: a matrix product's measured rate)."""
    profile = ctx.stand_in("a100")
    train_flops = 3 * forward_flops_per_image(profile)
    peak = datasheet_peak(ctx.measured.get("device_name", "")) if ctx.sizes.device == "gpu" else None
    batch = ctx.measured.get("microbatch", REFERENCE_DEVICE_BATCH)
    results: dict[str, Any] = {"batch": batch, "train_gflop_per_image": round(train_flops / 1e9, 1), "lines": []}
    for precision in ctx.sizes.mfu_precisions:
        seconds = time_training_step(profile, precision, batch, ctx.sizes.timed_steps)
        achieved = batch * train_flops / seconds
        matmul, size = matmul_rate(ctx.sizes.device, precision)
        reference = peak or matmul
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
            "images_per_second": round(rate, 2), "data_wait_fraction": data_wait_fraction(log.steps),
            "microbatch": log.end["microbatch"], "timed_steps": len(steady),
            "projected_reference_epoch_minutes_on_8_gpus": round(projected_epoch_minutes(rate), 2),
            "warnings": [warning] if warning else []}


def check_kill_and_resume(ctx: Context) -> dict[str, Any]:
    """tests/test_reliability.py's kill-and-resume check on this device: hot on the tiny profile, 2 epochs of
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
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True)
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
    """notebooks/03_hot.ipynb under papermill with segkit's engine (``segkit.headless``), in a kernel of
    this Python, on the generated scenes with random initialization for a few batches: no cell shows an
    error, the training cell ends with one plotly figure, and that figure plots the run's metrics.json."""
    import nbformat
    import papermill

    from segkit.headless import current_python_kernel, execute_notebook
    from segkit.notebooks import NOTEBOOKS_DIR
    from segkit.plots import PLOTLY_MIME
    from segkit.runs import METRICS_FILE, Run

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


#: The parts, in the order they run (evaluate reads hot's run; throughput and gpu-profile use hot's microbatch).
PARTS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "hot": check_hot,
    "evaluate": check_evaluate,
    "throughput": check_throughput,
    "gpu-profile": check_gpu_profile,
    "launcher": check_launcher,
    "notebook": check_notebook,
    "kill-resume": check_kill_and_resume,
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
            scenes = make_scenes(Path(work) / "scenes", train_images, val_images, min_size, max_size)
            report["device"] = device_name(sizes)
            print(f"gpu_check: device {report['device']} ({sizes.device} mode); "
                  + ", ".join(f"{k} {v}" for k, v in report["environment"].items())
                  + f"; parts {','.join(parts)}; budget {budget_s:g} s", flush=True)
            save_report(report, json_path)
            print(f"generated {train_images} + {val_images} scenes of {min_size}-{max_size} px in "
                  f"{time.monotonic() - started:.0f} s", flush=True)
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
    parser.add_argument("--parts", type=parse_parts, default=list(PARTS),
                        help=f"comma-separated parts to run, in this order whatever the order given: "
                             f"{','.join(PARTS)} (default all)")
    parser.add_argument("--budget", type=float, default=None,
                        help=f"seconds for the whole check (default {GPU_SIZES.budget_s:g}, "
                             f"with --cpu {CPU_SIZES.budget_s:g})")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this file after every part")
    parser.add_argument("--killed-run", default=None, help=argparse.SUPPRESS)  # the kill/resume part's child
    args = parser.parse_args()
    if args.killed_run:
        killed_run(json.loads(args.killed_run))
        return 0
    sizes = CPU_SIZES if args.cpu else GPU_SIZES
    report = check(sizes, args.budget or sizes.budget_s, args.parts, args.json)
    print("\n".join(recap(report)))
    if args.json:
        print(f"results: {args.json}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

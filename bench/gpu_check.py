"""The GPU check: the reference job's mechanics and speed on one GPU, in a few minutes.

Meant for a machine with Python 3.12 and torch but no Composer and no network (bench/gpu_check.sh
installs the wheels of bench/gpu_bundle.py first). It trains on generated scenes in the
ADEChallengeData2016 layout, with ADE20k's 150 classes (the reference model's head) and random
initialization (no network, so no ImageNet weights: speed and mechanics are checked, not accuracy):

    hot          the a100 profile's hot recipe for 30 steps: AMP, channels-last, EMA, SAM through the
                 gradient scaler, MixUp, automatic microbatching. The loss is finite and falls, and every
                 step whose first gradients were finite ran SAM's second forward-backward pass (counted as
                 Composer's BEFORE_TRAIN_BATCH events, one per pass). Also: images/s, peak memory, the
                 microbatch size found, and one reference epoch on 8 GPUs projected from the images/s
    throughput   the model FLOPs utilisation (MFU) of a plain training step of ResNet-101 OS8 at 512 px
                 in bf16 and in fp16 (FLOPs: the forward counted by torch.utils.flop_counter, times 3)
                 against the GPU's dense peak, named in the output
    gpu profile  the first steps of the gpu profile, their time against the profile's throughput
                 assumption (segkit.profiles.GPU_THROUGHPUT_ASSUMPTION), and the epoch_scale the
                 measured speed would give
    kill/resume  a run SIGKILLed mid-epoch and started again has the history of an uninterrupted run
                 (tests/test_reliability.py's check, on the GPU: AMP's scaler, CUDA's generators)

Each part prints PASS, FAIL or SKIP with its reason; the script exits 1 if a part failed. A time
budget guards the whole: a part that would not fit is skipped, the hot run stops early when slow,
and an alarm ends a part that overruns the budget.

    bash bench/gpu_check.sh                        # on the GPU machine; JSON in $OUT/gpu_check.json
    .venv/bin/python bench/gpu_check.py --cpu      # here: the same logic at toy sizes, fp32 (under a minute)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: One reference epoch: ADE20k's training images, and the GPUs of the reference job.
REFERENCE_EPOCH_IMAGES = 20_210
REFERENCE_GPUS = 8
#: Dense tensor-core peaks in TFLOP/s for bf16 and fp16 (equal on these), from NVIDIA's datasheets,
#: by a part of the device name; the first match counts, so the more specific names come first.
GPU_PEAK_TFLOPS = {"H100 PCIe": 756.5, "H100 NVL": 835.5, "H100": 989.4, "H200": 989.4, "A100": 312.0}
#: Microbatch of the MFU's step when the hot part found none: the reference's per-GPU batch (128 over 8).
REFERENCE_DEVICE_BATCH = 16
#: The kill/resume part's runs: 2 epochs of 2 steps on 8 scenes, killed after step 3.
KILL_RUN_DURATION = "2ep"
#: Keys of a run's history that are timings, so differ between two runs of the same computation.
TIMINGS = ("wall_time", "images_per_second")


@dataclass(frozen=True)
class Sizes:
    """How big each part is: the GPU's sizes, or toy sizes for the CPU mode."""

    device: str  # "gpu" or "cpu"
    budget_s: float  # default wall-clock budget of the whole check
    scenes: tuple[int, int, int, int]  # generated set: training images, validation images, min and max side
    hot_steps: int  # steps of the hot recipe
    hot_time_cap_s: float  # the hot run stops early after this much training
    profile_steps: int  # steps of the gpu profile
    timed_steps: int  # training steps timed per precision for the MFU
    mfu_precisions: tuple[str, ...]  # autocast precisions of the MFU
    part_seconds: dict[str, float]  # about how long each part takes: a part is skipped if less is left


GPU_SIZES = Sizes(
    device="gpu", budget_s=420, scenes=(768, 32, 512, 640), hot_steps=30, hot_time_cap_s=120, profile_steps=6,
    timed_steps=10, mfu_precisions=("bf16", "fp16"),
    part_seconds={"hot": 150, "throughput": 40, "gpu profile": 70, "kill/resume": 60},
)
CPU_SIZES = Sizes(
    device="cpu", budget_s=120, scenes=(16, 4, 96, 144), hot_steps=8, hot_time_cap_s=60, profile_steps=3,
    timed_steps=3, mfu_precisions=("fp32",),
    part_seconds={"hot": 15, "throughput": 5, "gpu profile": 10, "kill/resume": 25},
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
    measured: dict[str, Any] = dataclasses.field(default_factory=dict)  # "microbatch": what hot's search found

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()

    def stand_in(self, name: str):
        """The named profile on the GPU; on the CPU the tiny profile under its name (same recipe
        mechanics, toy sizes, fp32, a fixed microbatch)."""
        from segkit.profiles import get_profile

        profile = get_profile(name)
        if self.sizes.device == "gpu":
            return profile
        return dataclasses.replace(get_profile("tiny"), name=f"{name}-on-cpu")


# --- data -------------------------------------------------------------------------------------------

def _write_chunk(job: tuple[Path, int, int, int, int, int]) -> Path:
    from segkit.scenes import write_scenes

    out, seed, train_images, val_images, min_size, max_size = job
    return write_scenes(out, seed=seed, train_images=train_images, val_images=val_images,
                        min_size=min_size, max_size=max_size)


def make_scenes(root: Path, train_images: int, val_images: int, min_size: int, max_size: int) -> Path:
    """Built-in scenes in the ADEChallengeData2016 layout, generated on every core (one seed per
    process), without a class list: the loader then takes ADE20k's 150 classes, the reference's head."""
    workers = min(os.cpu_count() or 1, 16, train_images)
    jobs = [(root / f"chunk{k}", k, share(train_images, workers, k), share(val_images, workers, k), min_size,
             max_size) for k in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        chunks = list(pool.map(_write_chunk, jobs))
    for split, prefix in (("training", "ADE_train"), ("validation", "ADE_val")):
        for kind in ("images", "annotations"):
            (root / kind / split).mkdir(parents=True, exist_ok=True)
        stems = [(chunk, path.stem) for chunk in chunks for path in sorted((chunk / "images" / split).iterdir())]
        for index, (chunk, stem) in enumerate(stems, start=1):
            for kind, suffix in (("images", ".jpg"), ("annotations", ".png")):
                (chunk / kind / split / f"{stem}{suffix}").rename(root / kind / split / f"{prefix}_{index:08d}{suffix}")
    for chunk in chunks:
        shutil.rmtree(chunk)
    return root


def share(total: int, parts: int, index: int) -> int:
    """The ``index``-th of ``parts`` near-equal shares of ``total``."""
    return total // parts + (index < total % parts)


# --- observing a run --------------------------------------------------------------------------------

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
    from segkit.engine import ema_has_started

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
    """FLOPs of one image's forward pass through the profile's model, counted on the meta device.

    Training takes 3x this (the backward computes gradients for inputs and weights, each about one
    forward). torch's counter itself overcounts the backward of grouped (depthwise) convolutions by
    the group count (torch 2.7), which is why the backward is not counted.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from segkit.model import deeplabv3plus

    with torch.device("meta"):
        model = deeplabv3plus(profile.backbone, num_classes, profile.output_stride, head_channels=profile.head_channels)
    images = torch.empty(2, 3, profile.image_size, profile.image_size, device="meta")  # BatchNorm needs 2
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(images)
    return counter.get_total_flops() / 2


def time_training_step(profile, precision: str, batch: int, steps: int, num_classes: int = 150) -> float:
    """Seconds per plain training step (forward, loss, backward, SGD step) of the profile's model on
    random data at ``batch``, channels-last, under autocast to ``precision`` ("bf16", "fp16", "fp32")."""
    import torch

    from segkit.losses import SegmentationLoss
    from segkit.model import deeplabv3plus

    device = torch.device("cuda" if profile.device == "gpu" else "cpu")
    model = deeplabv3plus(profile.backbone, num_classes, profile.output_stride, head_channels=profile.head_channels)
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


def peak_flops_per_second(device: str) -> tuple[float, str]:
    """The GPU's dense bf16/fp16 peak from its name, or on the CPU the measured fp32 matmul rate."""
    import torch

    if device == "gpu":
        name = torch.cuda.get_device_name()
        for part, tflops in GPU_PEAK_TFLOPS.items():
            if part in name:
                return tflops * 1e12, f"{name}: dense bf16/fp16 peak {tflops:g} TFLOP/s (datasheet)"
        raise CannotRun(f"no known peak for {name!r}; add it to GPU_PEAK_TFLOPS")
    size = 1024
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    started, repeats = time.perf_counter(), 0
    while time.perf_counter() - started < 0.5:
        a @ b
        repeats += 1
    rate = 2 * size**3 * repeats / (time.perf_counter() - started)
    return rate, f"CPU: measured fp32 {size}x{size} matmul rate {rate / 1e12:.3f} TFLOP/s"


# --- the parts --------------------------------------------------------------------------------------

def check_hot(ctx: Context) -> dict[str, Any]:
    """The a100 profile's hot recipe for a few dozen steps, with every algorithm observed."""
    profile = ctx.stand_in("a100")
    log = step_log_callback(ctx.sizes.hot_time_cap_s)
    train_observed("hot", profile, ctx.scenes, ctx.work, "hot", f"{ctx.sizes.hot_steps}ba", [log])
    steps, end = log.steps, log.end
    ctx.measured["microbatch"] = end["microbatch"]
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


def check_throughput(ctx: Context) -> dict[str, Any]:
    """MFU of a plain training step of the a100 profile's model in each precision."""
    profile = ctx.stand_in("a100")
    train_flops = 3 * forward_flops_per_image(profile)
    peak, peak_source = peak_flops_per_second(ctx.sizes.device)
    batch = ctx.measured.get("microbatch", REFERENCE_DEVICE_BATCH)
    results: dict[str, Any] = {"peak_used": peak_source, "batch": batch,
                               "train_gflop_per_image": round(train_flops / 1e9, 1)}
    for precision in ctx.sizes.mfu_precisions:
        seconds = time_training_step(profile, precision, batch, ctx.sizes.timed_steps)
        achieved = batch * train_flops / seconds
        results[precision] = {"step_s": round(seconds, 4), "images_per_second": round(batch / seconds, 2),
                              "tflop_per_s": round(achieved / 1e12, 2), "mfu": round(achieved / peak, 4),
                              "projected_reference_epoch_minutes_on_8_gpus":
                                  round(projected_epoch_minutes(batch / seconds), 2)}
        expect(0 < achieved / peak < 1.5, f"{precision}: an MFU of {achieved / peak:.2f} is not plausible")
    return results


def check_gpu_profile(ctx: Context) -> dict[str, Any]:
    """The gpu profile's first steps against its throughput assumption."""
    from segkit import recipes
    from segkit.profiles import GPU_THROUGHPUT_ASSUMPTION, REFERENCE_TRAIN_FLOPS_PER_IMAGE, gpu_epoch_scale

    profile = ctx.stand_in("gpu")
    train_flops = 3 * forward_flops_per_image(profile)
    if ctx.sizes.device == "gpu":
        expect(abs(train_flops / REFERENCE_TRAIN_FLOPS_PER_IMAGE - 1) < 0.01,
               f"the gpu profile's model takes {train_flops / 1e12:.3f} TFLOP per image, but segkit.profiles "
               f"assumes {REFERENCE_TRAIN_FLOPS_PER_IMAGE / 1e12:.3f}")
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
            "microbatch": log.end["microbatch"],
            "projected_reference_epoch_minutes_on_8_gpus": round(projected_epoch_minutes(rate), 2)}


def check_kill_and_resume(ctx: Context) -> dict[str, Any]:
    """tests/test_reliability.py's kill-and-resume check on this device: hot on the tiny profile, 2 epochs of
    2 steps, SIGKILLed after step 3 (mid-epoch) and started again, against an uninterrupted run.

    Two uninterrupted runs measure the device's own run-to-run noise (atomic adds in CUDA kernels make
    GPU runs differ in the last bits): the resumed run must match exactly where they do, and within
    twice their difference otherwise. Its per-step schedule (SAM's step index, the scaler's scale, the
    learning rate) must match exactly either way.
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
    noise = history_difference(run_history(folder / "uninterrupted"), run_history(folder / "again"))
    difference = history_difference(run_history(folder / "uninterrupted"), run_history(folder / "killed"))
    expect(difference is not None, "the resumed run's history has other evaluations than the uninterrupted one")
    expect(noise is not None and difference <= 2 * noise,
           f"the resumed history differs by {difference:g} from the uninterrupted one; two uninterrupted runs "
           f"differ by {noise:g}")
    return {"evaluations_before_kill": before, "steps_after_resume": len(log.steps),
            "history_difference": difference, "run_to_run_difference": noise, "exact": difference == 0}


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


def run_history(folder: Path) -> list[dict[str, Any]]:
    from segkit.runs import Run

    return [{k: v for k, v in entry.items() if k not in TIMINGS} for entry in Run.load(folder).history]


def history_difference(first: list[dict], second: list[dict]) -> float | None:
    """The largest absolute difference between two histories' numbers; None if their entries differ in
    number, keys or steps."""
    if [sorted(e) for e in first] != [sorted(e) for e in second] or \
            [e["step"] for e in first] != [e["step"] for e in second]:
        return None
    return max((abs(a[key] - b[key]) for a, b in zip(first, second, strict=True) for key in a
                if isinstance(a[key], (int, float)) and isinstance(b[key], (int, float))), default=0.0)


def significant(value: float, digits: int = 4) -> float:
    """``value`` to ``digits`` significant digits (a CPU's epoch_scale is tiny, a GPU's step time is not)."""
    return float(f"{value:.{digits}g}")


def _release_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


PARTS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "hot": check_hot,
    "throughput": check_throughput,
    "gpu profile": check_gpu_profile,
    "kill/resume": check_kill_and_resume,
}


# --- running the check ------------------------------------------------------------------------------

def environment(sizes: Sizes) -> dict[str, Any]:
    """Versions and device; raises CannotRun naming what is missing for the check to run at all."""
    found = {"python": platform.python_version()}
    for module in ("torch", "torchvision", "composer"):
        try:
            found[module] = __import__(module).__version__
        except (ImportError, RuntimeError, OSError) as error:  # a torchvision built for another torch raises these
            hint = {"torch": "the check needs the machine's own torch",
                    "torchvision": "the bundle's torchvision wheel is built for torch 2.11 only",
                    "composer": "install the bundle first: bash bench/gpu_check.sh"}[module]
            raise CannotRun(f"{module} is missing or broken ({error}); {hint}") from None
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
                                                if k not in ("status", "seconds", "losses") and not isinstance(v, dict))
    return f"{result['status']} {name} ({result['seconds']:g} s): {details}"


def check(sizes: Sizes, budget_s: float) -> dict[str, Any]:
    """Run every part; the results, as the JSON file holds them."""
    started = time.monotonic()
    report: dict[str, Any] = {"mode": sizes.device, "budget_s": budget_s, "parts": {}}

    def out_of_time(signum, frame):
        raise OutOfTime

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(max(1, int(budget_s)))
    current = "setup"
    try:
        report["environment"] = environment(sizes)
        with tempfile.TemporaryDirectory(prefix="segkit-gpu-check-") as work:
            train_images, val_images, min_size, max_size = sizes.scenes
            # generated before CUDA starts: the generating processes are forked
            scenes = make_scenes(Path(work) / "scenes", train_images, val_images, min_size, max_size)
            report["environment"]["device"] = device_name(sizes)
            print(" ".join(f"{k} {v}" for k, v in report["environment"].items()), flush=True)
            print(f"generated {train_images} + {val_images} scenes of {min_size}-{max_size} px in "
                  f"{time.monotonic() - started:.0f} s", flush=True)
            ctx = Context(sizes, scenes, Path(work), deadline=started + budget_s)
            for name, part in PARTS.items():
                current = name
                report["parts"][name] = run_part(name, part, ctx)
                print(summary_line(name, report["parts"][name]), flush=True)
    except CannotRun as reason:
        report["parts"]["setup"] = {"status": "FAIL", "reason": str(reason), "seconds": 0}
        print(f"FAIL setup: {reason}")
    except OutOfTime:
        report["parts"][current] = {"status": "FAIL", "reason": f"the time budget of {budget_s:g} s ran out",
                                    "seconds": round(time.monotonic() - started, 1)}
        print(f"FAIL {current}: the time budget of {budget_s:g} s ran out")
        for name in PARTS.keys() - report["parts"].keys():
            report["parts"][name] = {"status": "SKIP", "reason": "the time budget ran out before it", "seconds": 0}
    finally:
        signal.alarm(0)
    report["seconds"] = round(time.monotonic() - started, 1)
    report["passed"] = all(part["status"] != "FAIL" for part in report["parts"].values())
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="the reduced mode: toy sizes, fp32, on the CPU")
    parser.add_argument("--budget", type=float, default=None,
                        help=f"seconds for the whole check (default {GPU_SIZES.budget_s:g}, "
                             f"with --cpu {CPU_SIZES.budget_s:g})")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this file")
    parser.add_argument("--killed-run", default=None, help=argparse.SUPPRESS)  # the kill/resume part's child
    args = parser.parse_args()
    if args.killed_run:
        killed_run(json.loads(args.killed_run))
        return 0
    sizes = CPU_SIZES if args.cpu else GPU_SIZES
    report = check(sizes, args.budget or sizes.budget_s)
    statuses = [part["status"] for part in report["parts"].values()]
    counts = {status: statuses.count(status) for status in ("PASS", "FAIL", "SKIP")}
    print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped in {report['seconds']:g} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
        print(f"results: {args.json}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

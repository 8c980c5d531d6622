"""The laptop step against the machine's limit: achieved FLOP/s of the cpu profile's training step
over the same host's large fp32 matmul rate (the named peer), and each candidate speed-up, in one run.

    .venv/bin/python bench/laptop_step.py            # about 3 minutes on 2 cores
    .venv/bin/python bench/laptop_step.py --quick    # a smoke run

The step is the cpu profile's baseline step as the engine runs it (bench/trainer_overhead.py shows
the trainer adds under 5%): DeepLabV3+ ResNet-10, 64 px, output stride 16, head 128, batch 8,
CE + Dice, SGD. Its FLOPs are counted once (forward and backward, ``FlopCounterMode``). Each
candidate is timed against the step as it was ("before"), taking turns (``measure.interleaved_seconds``):
    - model step alone (no data): what the data pipeline costs today;
    - channels-last on the CPU;
    - one thread instead of two;
    - bf16 autocast, only where the CPU has bf16 instructions (avx512_bf16 or AMX);
    - data: decoded images kept in memory (shipped: the engine does it for the built-in scenes,
      ``ADE20k(keep_decoded=True)``; measured as after the first epoch, when all are kept), and one
      DataLoader worker preparing batches while the two threads compute.
"before" is the step as the cpu profile trained it before that change; every ratio is against it.
Target: the step's achieved FLOP/s at half or more of the matmul rate.
"""

from __future__ import annotations

import argparse
import copy
import statistics
from collections.abc import Callable
from contextlib import nullcontext

import torch
from measure import host_line, interleaved_seconds, matmul_gflops
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from segkit.data import open_dataset
from segkit.losses import SegmentationLoss
from segkit.model import build_model
from segkit.profiles import get_profile
from segkit.scenes import builtin_scenes
from segkit.transforms import normalize, train_transform

TARGET_SHARE = 0.5


def cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def step_function(model, loss_fn, optimizer, batches: Callable[[], tuple], channels_last: bool = False,
                  bf16: bool = False) -> Callable[[], None]:
    """One training step on the next batch from ``batches``."""
    def step() -> None:
        images, masks = batches()
        inputs = normalize(images)
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            logits = model(inputs)
        loss = loss_fn(logits.float(), masks)["total"]
        loss.backward()
        optimizer.step()
    return step


def cycling(loader: DataLoader) -> Callable[[], tuple]:
    iterator = iter(loader)

    def next_batch() -> tuple:
        nonlocal iterator
        try:
            return next(iterator)
        except StopIteration:
            iterator = iter(loader)
            return next(iterator)
    return next_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions: a smoke run")
    args = parser.parse_args()
    repeats, warmup = (4, 1) if args.quick else (30, 5)
    profile = get_profile("cpu")
    print(host_line(), flush=True)
    matmul = matmul_gflops() * 1e9
    torch.manual_seed(0)
    dataset = open_dataset(builtin_scenes(), "training", train_transform(profile.image_size))
    model = build_model(profile, dataset.num_classes).train()
    loss_fn = SegmentationLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batch = profile.global_batch_size
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True)
    fixed = next(iter(loader))

    with FlopCounterMode(display=False) as counter:
        loss_fn(model(normalize(fixed[0])), fixed[1])["total"].backward()
    flops = counter.get_total_flops()
    optimizer.zero_grad(set_to_none=True)

    last_model = copy.deepcopy(model).to(memory_format=torch.channels_last)  # weights in the same layout
    last_optimizer = torch.optim.SGD(last_model.parameters(), lr=0.01, momentum=0.9)
    kept = open_dataset(builtin_scenes(), "training", train_transform(profile.image_size), keep_decoded=True)
    for index in range(len(kept)):  # as after the first epoch of a run: every pair kept
        kept.load(index)
    kept_loader = DataLoader(kept, batch_size=batch, shuffle=True, drop_last=True)
    worker_loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, num_workers=1,
                               persistent_workers=True)
    candidates = {
        "before (fp32, 2 threads, decoded every time)": step_function(model, loss_fn, optimizer, cycling(loader)),
        "model step alone (no data)": step_function(model, loss_fn, optimizer, lambda: fixed),
        "channels-last": step_function(last_model, loss_fn, last_optimizer, cycling(loader), channels_last=True),
        "decoded images kept (shipped, after epoch 1)": step_function(model, loss_fn, optimizer, cycling(kept_loader)),
        "1 DataLoader worker": step_function(model, loss_fn, optimizer, cycling(worker_loader)),
    }
    if cpu_has_bf16():
        candidates["bf16 autocast"] = step_function(model, loss_fn, optimizer, cycling(loader), bf16=True)
    seconds = interleaved_seconds(candidates, warmup=warmup, repeats=repeats)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    one_thread = interleaved_seconds({"1 thread": candidates["before (fp32, 2 threads, decoded every time)"]},
                                     warmup=warmup, repeats=repeats)
    torch.set_num_threads(threads)
    seconds.update(one_thread)

    before = statistics.median(seconds["before (fp32, 2 threads, decoded every time)"])
    print(f"step: {flops / 1e9:.2f} GFLOP (forward + backward) for {batch} images of {profile.image_size} px; "
          f"matmul {matmul / 1e9:.0f} GFLOP/s\n")
    print(f"{'candidate':<46} {'s/step':>8} {'images/s':>9} {'GFLOP/s':>8} {'of matmul':>10} {'vs before':>11}")
    for name, times in seconds.items():
        median = statistics.median(times)
        achieved = flops / median
        print(f"{name:<46} {median:>8.4f} {batch / median:>9.1f} {achieved / 1e9:>8.1f} {achieved / matmul:>9.0%} "
              f"{before / median:>10.2f}x")
    for name in ("before (fp32, 2 threads, decoded every time)", "decoded images kept (shipped, after epoch 1)"):
        share = flops / statistics.median(seconds[name]) / matmul
        print(f"{name}: {share:.0%} of the matmul rate (target at least {TARGET_SHARE:.0%}): "
              f"{'met' if share >= TARGET_SHARE else 'not met'}")
    if not cpu_has_bf16():
        print("bf16 autocast: not measured, this CPU has no bf16 instructions")


if __name__ == "__main__":
    main()

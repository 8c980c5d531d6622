"""Trainer overhead: a training step through ``segkit.train`` against a plain PyTorch loop.

``segkit.train`` runs each step through Composer's Trainer, segkit's ``RunRecorder`` and the
live-progress hook (``on_progress``). The hook here does what the notebooks' ``LiveCurves`` does at
every step, ``CurveData.add``, and notes the time; it never redraws (LiveCurves redraws every 2
seconds, a notebook's cost rather than the trainer's). The peer is a plain loop over the same
loader, model, loss and optimizer, all built with segkit's own functions, so that the trainer is
the only difference:

    for images, masks in loader:    logits = model(normalize(images)); loss = SegmentationLoss(...)
                                     zero_grad; backward; DecoupledSGDW step; cosine LR step

Both run the baseline recipe from random weights (``weights="none"``: the cpu profile's pretrained
backbone costs a pretraining run and changes nothing in a step's cost) on the built-in scenes, at
two shapes: the ``cpu`` profile (64 px, batch 8, ResNet-10, stride 16, head 128) and the same at
128 px and batch 16 (eight times the pixels per step).

A step's time is the interval between two consecutive ends of a step, so it holds everything the
loop does per step: fetching and augmenting the batch, forward, loss, backward, optimizer,
scheduler and, for the trainer, Composer's events and segkit's callbacks. In the trainer the ends
are the live-progress hook's "batch" calls; an interval that holds an evaluation (Composer evaluates
at every epoch's end and after the last step) is dropped, and so is the first interval of each epoch
in the plain loop, so that both sides count the same steps. The first ``--warmup`` intervals of each
run are dropped too. The trainer and the plain loop take turns for ``--rounds`` rounds.

    .venv/bin/python bench/trainer_overhead.py            # both shapes, 3 rounds of 20 steps (about 2 minutes)
    .venv/bin/python bench/trainer_overhead.py --quick    # smoke run: 1 round of 4 steps at each shape
    .venv/bin/python bench/trainer_overhead.py --why      # also: where the trainer's extra time goes

Prints seconds per step of each, the ratio trainer / plain loop (target: at most 1.05x), and with
``--why`` the functions that take more own time per step in the trainer than in the plain loop
(cProfile, which slows Python calls, so its times are upper bounds).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import math
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from composer.optim import DecoupledSGDW
from measure import host_line

from segkit.data import build_loaders, open_dataset
from segkit.engine import train
from segkit.losses import SegmentationLoss
from segkit.model import build_model
from segkit.profiles import get_profile
from segkit.spec import RunSpec, run_spec
from segkit.teaching.plots import CurveData
from segkit.transforms import eval_transform, normalize, train_transform

TARGET_RATIO = 1.05


def shapes() -> dict[str, RunSpec]:
    """The two shapes measured, as run specs without a duration (each run sets its own)."""
    laptop = get_profile("cpu")
    larger = dataclasses.replace(laptop, name="cpu-128px-batch16", image_size=128, global_batch_size=16,
                                 microbatch_size=16)
    return {profile.name: run_spec("baseline", profile, weights="none") for profile in (laptop, larger)}


class StepClock:
    """Times the ends of steps; ``intervals()`` gives the step times that hold no evaluation.

    Its ``__call__`` is the ``on_progress`` hook of ``segkit.train``: it keeps the curves' data as the
    notebooks' live curves do. The plain loop calls ``step_end`` and ``epoch_start`` itself. A
    profiler, if given, records only the steps after the warm-up.
    """

    def __init__(self, warmup: int, steps: int, profiler: cProfile.Profile | None = None):
        self.warmup, self.steps, self.profiler = warmup, steps, profiler
        self.ends: list[float] = []
        self.interrupted: set[int] = set()  # indices into ends whose interval is not a plain step
        self.curves = CurveData()

    def __call__(self, kind: str, data: dict) -> None:
        self.curves.add(kind, data)
        if kind == "batch":
            self.step_end()
        else:  # "eval": the interval up to the next step's end holds an evaluation
            self.interrupted.add(len(self.ends))

    def epoch_start(self) -> None:
        self.interrupted.add(len(self.ends))

    def step_end(self) -> None:
        self.ends.append(time.perf_counter())
        if self.profiler is not None and len(self.ends) == self.warmup + 1:
            self.profiler.enable()
        if self.profiler is not None and len(self.ends) == self.warmup + self.steps + 1:
            self.profiler.disable()

    def intervals(self) -> list[float]:
        """Seconds of each step after the warm-up, from one step's end to the next."""
        return [self.ends[i] - self.ends[i - 1] for i in range(self.warmup + 1, len(self.ends))
                if i not in self.interrupted]

    @property
    def total_steps(self) -> int:
        """Steps to run: one before the first measured end, the warm-up, then the measured steps."""
        return 1 + self.warmup + self.steps


def trainer_steps(spec: RunSpec, clock: StepClock) -> None:
    """Train ``clock.total_steps`` steps through ``segkit.train`` in a throw-away run folder."""
    spec = dataclasses.replace(spec, duration=f"{clock.total_steps}ba")
    with tempfile.TemporaryDirectory() as runs:
        train(spec, save_folder=runs, on_progress=clock, print_progress=False, progress_bar=False)


def plain_steps(spec: RunSpec, clock: StepClock) -> None:
    """Train ``clock.total_steps`` steps of the same model, loader, loss and optimizer in a plain loop."""
    profile, recipe = spec.profile, spec.scaled_recipe()
    data_root = spec.data_folder()
    train_set = open_dataset(data_root, "training", train_transform(profile.image_size))
    val_set = open_dataset(data_root, "validation", eval_transform(profile.image_size))
    loader, _ = build_loaders(train_set, val_set, profile.global_batch_size, spec.seed,
                              num_workers=profile.num_workers)
    torch.manual_seed(spec.seed)
    model = build_model(profile, train_set.num_classes)
    loss_fn = SegmentationLoss(recipe.ce_weight, recipe.dice_weight)
    optimizer = DecoupledSGDW(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                              weight_decay=recipe.weight_decay)
    total = clock.total_steps
    # Composer's CosineAnnealingScheduler(t_max="1dur", alpha_f=0) over this run, stepped every batch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    model.train()
    step, epoch = 0, 0
    while step < total:
        loader.sampler.set_epoch(epoch)  # as Composer does at every epoch's start
        if epoch > 0:
            clock.epoch_start()
        for images, masks in loader:
            losses = loss_fn(model(normalize(images)), masks)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()
            schedule.step()
            float(losses["total"])  # a loop that shows a loss curve reads the loss every step
            step += 1
            clock.step_end()
            if step == total:
                break
        epoch += 1


RUNNERS: dict[str, Callable[[RunSpec, StepClock], None]] = {"trainer": trainer_steps, "plain": plain_steps}


def measure(spec: RunSpec, rounds: int, warmup: int, steps: int) -> dict[str, list[float]]:
    """Seconds per step of the trainer and of the plain loop, over ``rounds`` alternating runs of each."""
    seconds: dict[str, list[float]] = {name: [] for name in RUNNERS}
    for _ in range(rounds):
        for name, run in RUNNERS.items():
            clock = StepClock(warmup, steps)
            run(spec, clock)
            seconds[name] += clock.intervals()
    return seconds


def own_time_per_step(spec: RunSpec, warmup: int, steps: int) -> dict[str, dict[tuple, float]]:
    """Seconds of own time per step of every function (cProfile), for the trainer and for the plain loop."""
    own_seconds = {}
    for name, run in RUNNERS.items():
        profiler = cProfile.Profile()
        run(spec, StepClock(warmup, steps, profiler))
        stats = pstats.Stats(profiler).stats  # {(file, line, function): (calls, _, own, cumulative, _)}
        own_seconds[name] = {key: value[2] / steps for key, value in stats.items()}
    return own_seconds


def explain_overhead(spec: RunSpec, warmup: int, steps: int, top: int = 15) -> None:
    """Print the trainer's own Python time per step, then the functions that take more own time per step
    in the trainer than in the plain loop (torch's operators among them differ by noise only, unless the
    trainer adds work such as a copy)."""
    own = own_time_per_step(spec, warmup, steps)
    composer = sum(t for (file, _, _), t in own["trainer"].items() if "/composer/" in file)
    engine = sum(t for (file, _, _), t in own["trainer"].items() if file.endswith("segkit/engine.py"))
    print(f"  cProfile, {steps} steps: all own time {1000 * sum(own['trainer'].values()):.1f} ms/step in the trainer, "
          f"{1000 * sum(own['plain'].values()):.1f} ms/step in the plain loop; Python code of Composer "
          f"{1000 * composer:.2f} ms/step, of segkit.engine (SegmentationModel, RunRecorder) "
          f"{1000 * engine:.2f} ms/step")
    extra = {key: t - own["plain"].get(key, 0.0) for key, t in own["trainer"].items()}
    print("  own time per step, trainer minus plain loop, largest first:")
    for (file, line, function), seconds in sorted(extra.items(), key=lambda item: item[1], reverse=True)[:top]:
        print(f"  {1000 * seconds:8.3f} ms  {file}:{line} {function}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 4 steps after 1 warm-up step")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each side per shape")
    parser.add_argument("--steps", type=int, default=20, help="measured steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="steps dropped at the start of each run")
    parser.add_argument("--why", action="store_true", help="profile where the trainer's extra time per step goes")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps, args.warmup = 1, 4, 1
    print(host_line())
    print(f"baseline recipe, random init, built-in scenes; {args.rounds} round(s) of {args.steps} steps after "
          f"{args.warmup} warm-up per side; median seconds per step")
    for name, spec in shapes().items():
        profile = spec.profile
        seconds = measure(spec, args.rounds, args.warmup, args.steps)
        trainer, plain = statistics.median(seconds["trainer"]), statistics.median(seconds["plain"])
        ratio = trainer / plain
        print(f"{name:18s} ({profile.image_size} px, batch {profile.global_batch_size}, {profile.backbone}, "
              f"stride {profile.output_stride}, head {profile.head_channels}): "
              f"segkit.train {trainer:.4f} s/step (n={len(seconds['trainer'])}), "
              f"plain loop {plain:.4f} s/step (n={len(seconds['plain'])}), ratio {ratio:.3f}x "
              f"({'within' if ratio <= TARGET_RATIO else 'above'} the {TARGET_RATIO}x target; "
              f"{1000 * (trainer - plain):+.1f} ms/step)")
        if args.why:
            explain_overhead(spec, args.warmup, args.steps)


if __name__ == "__main__":
    main()

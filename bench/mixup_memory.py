"""Peak memory of a medium step against a baseline step, at the full profile's tensor shapes.

The reference trains ResNet-101 DeepLabV3+ at 512x512 with 150 classes. Composer's MixUp turns
each mask into a dense one-hot target of shape (N, 150, 512, 512) and the dense CE + Dice then
make several such tensors; segkit's MixUp keeps index masks (see segkit/algorithms.py).

This script trains two real steps (the second is a SAM step in medium) of each variant on the
CPU, batch 2, each variant in a fresh process, and reads the process's peak resident memory
during each step (Linux: VmHWM, reset at the step's start through /proc/self/clear_refs):

    baseline                 the baseline recipe
    medium                   the medium recipe with segkit's MixUp (the default)
    medium-composer-mixup    the medium recipe with Composer's MixUp and a dense-target loss,
                             the reference's way (for comparison only)

It also measures the loss alone on logits of the full shape at batch 8, where the dense targets
of Composer's path show (in a whole step at batch 2 the backbone's activations dominate).

Run:  .venv/bin/python bench/mixup_memory.py          (about 6 minutes on a quiet 2-core machine)
It prints each step's peak and the ratios against the baseline step.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

BATCH = 2


def read_status(field: str) -> int:
    """A memory field of /proc/self/status, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    raise KeyError(field)


def make_data(root: Path) -> Path:
    """Four training and one validation scene at ADE20k-like sizes, with ADE20k's 150 classes."""
    from segkit.scenes import write_scenes

    write_scenes(root, train_images=BATCH * 2, val_images=1, min_size=512, max_size=683)
    (root / "objectInfo150.txt").unlink()  # without a class list the loader assumes ADE20k's 150 classes
    return root


def dense_composer_path() -> None:
    """Swap in Composer's MixUp and a loss for its dense targets (the reference's path)."""
    import composer.algorithms
    import torch
    from composer.loss import DiceLoss, soft_cross_entropy

    import segkit.algorithms
    import segkit.engine

    build = segkit.algorithms.build_algorithms

    def with_composer_mixup(recipe):
        algorithms = [a for a in build(recipe) if not isinstance(a, segkit.algorithms.SegmentationMixUp)]
        return [*algorithms, composer.algorithms.MixUp(alpha=recipe.mixup_alpha)]

    class DenseLoss(torch.nn.Module):
        def __init__(self, ce_weight, dice_weight):
            super().__init__()
            self.ce_weight, self.dice_weight = ce_weight, dice_weight
            self.dice = DiceLoss(softmax=True, batch=True, ignore_absent_classes=True)

        def forward(self, logits, target):
            ce = soft_cross_entropy(logits, target, ignore_index=-1)
            dice = self.dice(logits, target)
            return {"total": self.ce_weight * ce + self.dice_weight * dice, "cross_entropy": ce, "dice": dice}

    segkit.recipes.Recipe.algorithms = with_composer_mixup
    segkit.engine.SegmentationLoss = DenseLoss


def measure(variant: str, data: Path) -> list[dict[str, int]]:
    """Train two steps of ``variant`` in this process; return each step's memory."""
    import warnings

    from composer import Callback

    from segkit.engine import train
    from segkit.profiles import get_profile
    from segkit.spec import run_spec

    class StepMemory(Callback):
        def __init__(self):
            self.steps = []

        def batch_start(self, state, logger):
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current size
            self.steps.append({"before_mib": read_status("VmRSS")})

        def batch_end(self, state, logger):
            self.steps[-1]["peak_mib"] = read_status("VmHWM")

    if variant == "medium-composer-mixup":
        dense_composer_path()
        warnings.filterwarnings("ignore")  # Composer's notes about negative labels in dense targets
    full_shape_on_cpu = dataclasses.replace(
        get_profile("a100"), name="a100-shape-cpu", device="cpu", precision="fp32", global_batch_size=BATCH,
        microbatch_size=BATCH, weights=None, num_workers=0, sync_batchnorm=False)
    spy = StepMemory()
    with tempfile.TemporaryDirectory() as runs:
        train(run_spec("baseline" if variant == "baseline" else "medium", full_shape_on_cpu, data, duration="2ba"),
              save_folder=runs, callbacks=[spy], print_progress=False)
    return spy.steps


LOSS_BATCH = 8


def measure_loss(variant: str) -> dict[str, int]:
    """Peak memory that the loss adds (forward and backward) on logits of the full shape, batch 8."""
    import warnings

    import torch
    from composer.loss import DiceLoss, soft_cross_entropy

    from segkit.losses import MixedMasks, SegmentationLoss

    torch.manual_seed(0)
    logits = torch.randn(LOSS_BATCH, 150, 512, 512, requires_grad=True)  # 1.2 GiB
    masks = torch.randint(-1, 150, (LOSS_BATCH, 512, 512))
    partner = masks[torch.randperm(LOSS_BATCH)]
    before = read_status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    if variant == "baseline":
        SegmentationLoss()(logits, masks)["total"].backward()
    elif variant == "segkit-mixup":
        SegmentationLoss()(logits, MixedMasks(masks, partner, 0.8))["total"].backward()
    else:  # Composer's MixUp path (its BEFORE_LOSS step), then the dense CE and Dice the reference used
        from composer.loss.utils import ensure_targets_one_hot

        warnings.filterwarnings("ignore")  # "Negative label indices are being ignored ..."
        target = 0.8 * ensure_targets_one_hot(logits, masks) + 0.2 * ensure_targets_one_hot(logits, partner)
        dice = DiceLoss(softmax=True, batch=True, ignore_absent_classes=True)(logits, target)
        (0.375 * soft_cross_entropy(logits, target) + 1.125 * dice).backward()
    return {"before_mib": before, "peak_mib": read_status("VmHWM")}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "loss":  # a child process measuring one loss variant
        print(json.dumps(measure_loss(sys.argv[2])))
        return
    if len(sys.argv) == 3:  # a child process measuring one training variant
        print(json.dumps(measure(sys.argv[1], Path(sys.argv[2]))))
        return
    losses = {}
    for variant in ("baseline", "segkit-mixup", "composer-mixup"):
        done = subprocess.run([sys.executable, __file__, "loss", variant], capture_output=True, text=True)
        losses[variant] = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    print(f"The loss alone, forward and backward: logits ({LOSS_BATCH}, 150, 512, 512) fp32 "
          f"(1.2 GiB), CPU")
    base_loss = losses["baseline"]["peak_mib"] - losses["baseline"]["before_mib"]
    for variant, memory in losses.items():
        if memory is None:
            print(f"  {variant:16s} failed (out of memory?)")
            continue
        added = memory["peak_mib"] - memory["before_mib"]
        print(f"  {variant:16s} adds {added:6d} MiB  ({added / base_loss:.2f}x the baseline loss)")
    print()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        data = make_data(Path(folder) / "ade-shaped")
        for variant in ("baseline", "medium", "medium-composer-mixup"):
            done = subprocess.run([sys.executable, __file__, variant, str(data)], capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{variant}: failed\n{done.stderr[-3000:]}")
                continue
            results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"ResNet-101 DeepLabV3+, output stride 8, 512x512 crops, 150 classes, batch {BATCH}, CPU, fp32")
    print(f"{'variant':24s} {'step':>4s} {'RSS before':>11s} {'peak':>9s} {'step uses':>10s}")
    for variant, steps in results.items():
        for index, step in enumerate(steps, start=1):
            print(f"{variant:24s} {index:4d} {step['before_mib']:8d} MiB {step['peak_mib']:5d} MiB "
                  f"{step['peak_mib'] - step['before_mib']:6d} MiB")
    if "baseline" not in results:
        return
    base = max(step["peak_mib"] for step in results["baseline"])
    base_use = max(step["peak_mib"] - step["before_mib"] for step in results["baseline"])
    for variant in ("medium", "medium-composer-mixup"):
        if variant in results:
            peak = max(step["peak_mib"] for step in results[variant])
            use = max(step["peak_mib"] - step["before_mib"] for step in results[variant])
            print(f"{variant} / baseline: peak process memory {peak / base:.2f}x, memory a step adds "
                  f"{use / base_use:.2f}x")


if __name__ == "__main__":
    main()

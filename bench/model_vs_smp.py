"""The model: segkit's DeepLabV3+ against segmentation_models_pytorch's (smp 0.6), on the CPU.

Both are built with the same torchvision ResNet, output stride and number of classes, from random
weights (smp's ``encoder_weights=None``: nothing downloads). The heads are not the same network.
segkit's is the reference's (mmsegmentation's ``DepthwiseSeparableASPPHead``); smp's follows the
DeepLabV3+ paper's code. Read from segkit/model.py and smp's decoders/deeplabv3/{decoder,model}.py:

1. ASPP fusion: segkit fuses the five concatenated branches with a 3x3 conv (5C -> C, 45 C^2
   weights), smp with a 1x1 conv (5 C^2) followed by Dropout(0.5).
2. ASPP atrous branches: both depthwise 3x3 then pointwise 1x1; segkit puts BatchNorm and ReLU after
   each of the two (mmseg's separable module), smp only after the pointwise one (and the depthwise
   convs of both have no bias).
3. After ASPP: smp adds one separable 3x3 (C -> C) with BatchNorm and ReLU; segkit has none.
4. Decoder after the concatenation with the stride-4 features: segkit two separable 3x3 convs
   (C + 48 -> C, C -> C), smp one (C + 48 -> C).
5. Upsampling: segkit resizes the ASPP output to the stride-4 features' size and the logits to the
   input's size (bilinear, align_corners=False); smp uses fixed factors (2 at stride 8, 4 at stride
   16, then 4 for the logits; bilinear, align_corners=True).
6. Dropout: segkit Dropout2d(0.1) before the classifier; smp Dropout(0.5) on ASPP's output.
7. Image pooling branch: segkit broadcasts the pooled vector (``expand``, no copy); smp interpolates
   it from 1x1 to the feature size (a real tensor).
8. ReLU: segkit's are in place; smp's decoder ReLUs allocate their output.
9. Width and rates: smp's defaults are 256 channels and rates 12/24/36 at any stride; the reference
   uses 512 channels, and segkit halves the rates to 6/12/18 at stride 16.
10. Backbone: the same torchvision ResNet and the same stride-4 features (layer1) for the decoder.
    Dilation differs in one detail: smp gives the first block of a dilated stage the stage's
    dilation, torchvision (and segkit) keep the previous one there. Same weights and FLOPs, but
    on the CPU a dilated 3x3 convolution is not as cheap as an undilated one, in time or memory.

So the models are compared three ways: as published (smp's defaults), at equal head width and rates
(smp's ``decoder_channels`` and ``decoder_atrous_rates`` set to segkit's), and backbone alone
(segkit's ``DeepLabV3Plus.features`` against smp's encoder: the same architecture). FLOPs are counted
with ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products, forward and
backward; no BatchNorm, ReLU or interpolation), and "time per FLOP" is the time ratio over the FLOP
ratio: the comparison at equal work when the architectures differ.

A step is a forward and backward pass with cross-entropy on random labels, in training mode. Times
are medians, the candidates taking turns in one process. Memory is what a step adds to the process's
resident memory (Linux), that is its gradients and activations: each model runs in a fresh process
that takes one step, frees its gradients, resets the peak (VmHWM) to the current size and reads the
peak after a second step. glibc would otherwise keep memory freed
by the first step and hand it back to the second unseen, so the child runs with a fixed
``MALLOC_MMAP_THRESHOLD_`` (every block of 128 KiB or more is its own mapping, returned when freed).
tracemalloc cannot see torch's allocations, hence the process-level measure.

Shapes: the laptop's (the cpu profile's 64 px, batch 8, stride 16, 16 classes, head 128, but with
ResNet-18 on both sides: segkit's cpu profile uses ResNet-10, which smp does not offer) and the
reference's (ResNet-101, 512 x 512, stride 8, 150 classes, head 512, batch 2; ``--quick`` shrinks it
to 64 x 64).

    .venv/bin/python bench/model_vs_smp.py            # both shapes (about 10 minutes on a quiet 2-core machine)
    .venv/bin/python bench/model_vs_smp.py --quick    # smoke run, about a minute

Prints, per shape, the parameter count of each part of both models, then each candidate's
parameters, GFLOP per step, seconds per step and the memory a step adds, with the ratios segkit /
smp (target at equal architecture: at most 1.0x time and memory).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from measure import host_line, interleaved_seconds
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from segkit.model import ASPP_RATES, deeplabv3plus

#: glibc's first mmap threshold, made fixed (setting it turns off glibc's raising of the threshold).
MMAP_THRESHOLD = 128 * 1024


@dataclass(frozen=True)
class Shape:
    """One comparison point; every field is shared by both models."""

    name: str
    backbone: str  # torchvision ResNet that smp also offers
    image_size: int  # square input, pixels
    batch: int  # images per step (at least 2: image pooling's BatchNorm needs two values per channel)
    output_stride: int  # 8 or 16
    num_classes: int  # 16 for the built-in scenes, 150 for ADE20k
    head_channels: int  # segkit's head width; smp gets it in the equal-width comparison


SHAPES = {
    "laptop": Shape("laptop", "resnet18", 64, 8, 16, 16, 128),
    "reference": Shape("reference", "resnet101", 512, 2, 8, 150, 512),
}
QUICK_SHAPES = {**SHAPES, "reference": dataclasses.replace(SHAPES["reference"], image_size=64)}


# --- the candidates: each builds a module and the loss of one step on it ---

def segkit_model(shape: Shape) -> nn.Module:
    return deeplabv3plus(shape.backbone, shape.num_classes, shape.output_stride, head_channels=shape.head_channels)


def smp_model(shape: Shape) -> nn.Module:
    """smp as published: its default head (256 channels, rates 12/24/36, ASPP dropout 0.5)."""
    return smp.DeepLabV3Plus(encoder_name=shape.backbone, encoder_weights=None,
                             encoder_output_stride=shape.output_stride, classes=shape.num_classes)


def smp_equal_width(shape: Shape) -> nn.Module:
    """smp with segkit's head width and atrous rates."""
    return smp.DeepLabV3Plus(encoder_name=shape.backbone, encoder_weights=None,
                             encoder_output_stride=shape.output_stride, classes=shape.num_classes,
                             decoder_channels=shape.head_channels,
                             decoder_atrous_rates=ASPP_RATES[shape.output_stride])


def segmentation_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(images), labels)


def segkit_backbone_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    low_level, deep = model.features(images)  # what segkit's head reads: stride 4 and the last stage
    return low_level.mean() + deep.mean()


def smp_encoder_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    features = model.encoder(images)
    return features[2].mean() + features[-1].mean()  # what smp's decoder reads: stride 4 and the last stage


#: name: (model builder, loss of one step, the modules whose parameters the step trains)
CANDIDATES: dict[str, tuple[Callable[[Shape], nn.Module], Callable, tuple[str, ...]]] = {
    "segkit": (segkit_model, segmentation_loss, ("",)),
    "smp defaults": (smp_model, segmentation_loss, ("",)),
    "smp equal width": (smp_equal_width, segmentation_loss, ("",)),
    "segkit backbone": (segkit_model, segkit_backbone_loss, ("backbone",)),
    "smp encoder": (smp_model, smp_encoder_loss, ("encoder",)),
}
EQUAL_ARCHITECTURE = "equal architecture: the same dilated ResNet"
#: (segkit candidate, smp candidate, what is equal between them)
COMPARISONS = [
    ("segkit", "smp defaults", "as published: different heads"),
    ("segkit", "smp equal width", "equal head width and rates, different head structure"),
    ("segkit backbone", "smp encoder", EQUAL_ARCHITECTURE),
]
#: The target at equal architecture: segkit no slower and no larger than smp.
TARGET_RATIO = 1.0


class TrainingStep:
    """One forward and backward pass of a candidate on a fixed random batch, in training mode."""

    def __init__(self, name: str, shape: Shape):
        build, self.loss_of, trained = CANDIDATES[name]
        torch.manual_seed(0)
        self.model = build(shape).train()
        self.trained_parameters = parameters(self.model, trained)
        self.images = torch.randn(shape.batch, 3, shape.image_size, shape.image_size)
        self.labels = torch.randint(0, shape.num_classes, (shape.batch, shape.image_size, shape.image_size))

    def __call__(self) -> None:
        self.model.zero_grad(set_to_none=True)  # each step allocates its gradients, as in training
        self.loss_of(self.model, self.images, self.labels).backward()


def count_flops(name: str, shape: Shape) -> int:
    """FLOPs of one step of candidate ``name`` (forward and backward), counted by torch's FlopCounterMode on the
    meta device: from shapes alone, the same count as on real tensors without doing the arithmetic."""
    with torch.device("meta"):
        step = TrainingStep(name, shape)
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def parameters(module: nn.Module, prefixes: tuple[str, ...] = ("",)) -> int:
    """Parameters of the submodules named by ``prefixes`` ("" is the whole module)."""
    return sum(p.numel() for name, p in module.named_parameters()
               if any(prefix == "" or name.startswith(prefix + ".") for prefix in prefixes))


#: The parts of both models, by module name: (part, segkit's modules, smp's modules).
PARTS = [
    ("backbone (the same torchvision ResNet)", ("backbone",), ("encoder",)),
    ("ASPP image pooling (1x1)", ("head.aspp.0",), ("decoder.aspp.0.convs.4",)),
    ("ASPP 1x1 branch", ("head.aspp.1",), ("decoder.aspp.0.convs.0",)),
    ("ASPP 3 separable atrous branches", ("head.aspp.2", "head.aspp.3", "head.aspp.4"),
     ("decoder.aspp.0.convs.1", "decoder.aspp.0.convs.2", "decoder.aspp.0.convs.3")),
    ("ASPP fusion: segkit 3x3, smp 1x1", ("head.aspp_fuse",), ("decoder.aspp.0.project",)),
    ("separable 3x3 after ASPP (smp only)", (), ("decoder.aspp.1", "decoder.aspp.2")),
    ("stride-4 projection to 48", ("head.low_level_project",), ("decoder.block1",)),
    ("decoder: segkit 2 separable, smp 1", ("head.decoder",), ("decoder.block2",)),
    ("classifier 1x1", ("head.classifier",), ("segmentation_head",)),
]


def print_parts(shape: Shape) -> None:
    """Parameters of each part of segkit's model and of smp's at segkit's head width."""
    segkit, other = segkit_model(shape), smp_equal_width(shape)
    print(f"  parameters by part (smp at segkit's width {shape.head_channels}):")
    print(f"    {'part':40s} {'segkit':>11s} {'smp':>11s} {'difference':>11s}")
    for part, ours, theirs in PARTS:
        ours_count, theirs_count = parameters(segkit, ours) if ours else 0, parameters(other, theirs) if theirs else 0
        print(f"    {part:40s} {ours_count:11,d} {theirs_count:11,d} {ours_count - theirs_count:+11,d}")
    unaccounted = (parameters(segkit) - sum(parameters(segkit, p[1]) for p in PARTS if p[1]),
                   parameters(other) - sum(parameters(other, p[2]) for p in PARTS if p[2]))
    print(f"    {'total':40s} {parameters(segkit):11,d} {parameters(other):11,d} "
          f"{parameters(segkit) - parameters(other):+11,d}" + ("" if unaccounted == (0, 0) else
                                                                f"  (not in a part: {unaccounted})"))


# --- memory, one fresh process per candidate ---

def read_status_mib(field: str) -> float:
    """A memory field of /proc/self/status (Linux), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def step_memory(name: str, shape: Shape) -> dict[str, float]:
    """In this (fresh) process: resident memory before a step and its peak during it, after one warm-up step.

    The warm-up's gradients are freed first, so the step's memory holds its gradients and activations.
    """
    step = TrainingStep(name, shape)
    step()
    step.model.zero_grad(set_to_none=True)
    gc.collect()
    before = read_status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current size
    step()
    return {"before_mib": before, "peak_mib": read_status_mib("VmHWM")}


def measure_memory(name: str, shape: Shape) -> float | None:
    """MiB a step of ``name`` adds, measured in a child process; None if the child failed."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    done = subprocess.run([sys.executable, __file__, "--memory-of", name, json.dumps(dataclasses.asdict(shape))],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        print(f"  memory of {name} failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    memory = json.loads(done.stdout.strip().splitlines()[-1])
    return memory["peak_mib"] - memory["before_mib"]


def compare(shape: Shape, warmup: int, repeats: int) -> None:
    print(f"\n{shape.name}: {shape.backbone}, {shape.image_size}x{shape.image_size}, batch {shape.batch}, "
          f"output stride {shape.output_stride}, {shape.num_classes} classes, segkit head {shape.head_channels}")
    print_parts(shape)
    flops = {name: count_flops(name, shape) for name in CANDIDATES}
    steps = {name: TrainingStep(name, shape) for name in CANDIDATES}
    seconds = {name: statistics.median(times)
               for name, times in interleaved_seconds(steps, warmup=warmup, repeats=repeats).items()}
    params = {name: step.trained_parameters for name, step in steps.items()}
    del steps
    memory = {name: measure_memory(name, shape) for name in CANDIDATES}
    print(f"  {'candidate':16s} {'parameters':>12s} {'GFLOP/step':>11s} {'s/step':>8s} {'step adds':>10s}")
    for name in CANDIDATES:
        added = f"{memory[name]:6.0f} MiB" if memory[name] is not None else "   failed"
        print(f"  {name:16s} {params[name]:12,d} {flops[name] / 1e9:11.2f} {seconds[name]:8.4f} {added:>10s}")
    for ours, theirs, what in COMPARISONS:
        time_ratio, flop_ratio = seconds[ours] / seconds[theirs], flops[ours] / flops[theirs]
        memory_ratio = (f"{memory[ours] / memory[theirs]:.3f}x" if memory[ours] and memory[theirs] else "n/a")
        verdict = ""
        if what == EQUAL_ARCHITECTURE:
            met = time_ratio <= TARGET_RATIO and memory[ours] is not None and memory[ours] <= memory[theirs]
            verdict = f"; target at most {TARGET_RATIO}x time and memory: {'met' if met else 'missed'}"
        print(f"  {ours} / {theirs} ({what}): time {time_ratio:.3f}x, FLOPs {flop_ratio:.3f}x, "
              f"time per FLOP {time_ratio / flop_ratio:.3f}x, memory {memory_ratio}{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: reference shape at 64 px, 2 repetitions")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per candidate")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per candidate")
    parser.add_argument("--only", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--memory-of", nargs=2, metavar=("CANDIDATE", "SHAPE_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:  # a child process measuring one candidate's memory
        name, shape = args.memory_of
        print(json.dumps(step_memory(name, Shape(**json.loads(shape)))))
        return
    if args.quick:
        args.repeats = 2
    shapes = QUICK_SHAPES if args.quick else SHAPES
    print(host_line())
    print(f"segmentation_models_pytorch {smp.__version__}; forward + backward, fp32, training mode; "
          f"median of {args.repeats} steps after {args.warmup} warm-up; memory: VmHWM growth in a fresh process")
    for name in args.only:
        compare(shapes[name], args.warmup, args.repeats)


if __name__ == "__main__":
    main()

"""Where a run computes: the device rules, in one place.

A profile names a device kind, ``"cpu"`` or ``"gpu"`` (CUDA). From it follow the torch device that
inference uses, how many processes train by default (every visible GPU; one on the CPU), which
Composer precisions and microbatch sizes are allowed, and the distributed backend (NCCL on GPUs,
gloo on the CPU, which is how the CPU twin of a multi-GPU job runs). The engine, the notebooks'
checks, the command line and inference all ask here. Plain PyTorch: nothing here imports Composer.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch

from segkit.errors import ConfigError

#: Device kinds a profile may name, and the Composer precisions each allows.
PRECISIONS = {"cpu": ("fp32",), "gpu": ("fp32", "amp_fp16", "amp_bf16")}
#: Autocast dtypes of Composer's mixed precisions.
_AUTOCAST = {"amp_fp16": torch.float16, "amp_bf16": torch.bfloat16}
#: CUDA's upsampling kernels index a tensor with 32-bit integers, so a microbatch's full-resolution
#: logits (images x classes x height x width) must stay under this many elements. Seen on an H200: one
#: GPU's whole batch of 128 at 512 px and 150 classes, then Composer's halved 64, were both refused.
CUDA_ELEMENT_LIMIT = 2**31 - 1


def check_device_settings(device: str, precision: str, microbatch_size: int | str) -> None:
    """Refuse a device kind, precision or microbatch size the device cannot run, in one line."""
    if device not in PRECISIONS:
        raise ConfigError(f"device {device!r} is not one of {', '.join(PRECISIONS)}")
    if precision not in PRECISIONS[device]:
        raise ConfigError(f"precision {precision!r} does not run on {device}; use one of "
                          f"{', '.join(PRECISIONS[device])}")
    if microbatch_size == "auto" and device != "gpu":
        raise ConfigError("microbatch_size 'auto' finds the size by running out of GPU memory; on the CPU give "
                          "a number")


def largest_microbatch(device_batch: int, num_classes: int, image_size: int) -> int:
    """The largest divisor of ``device_batch`` whose logits stay under ``CUDA_ELEMENT_LIMIT`` elements.

    Composer's automatic microbatching starts from the whole per-device batch and halves it only on
    running out of memory, which a large GPU does not: this is where it starts instead.

    Example:
        >>> largest_microbatch(128, 150, 512), largest_microbatch(16, 150, 512)
        (32, 16)
    """
    fits = max(1, CUDA_ELEMENT_LIMIT // (num_classes * image_size * image_size))
    return max(size for size in range(1, min(device_batch, fits) + 1) if device_batch % size == 0)


def check_microbatch(microbatch_size: int | str, device_batch: int, num_classes: int, image_size: int) -> int:
    """The microbatch a run starts with: ``largest_microbatch`` for "auto", else the given size if it fits.

    Raises:
        ConfigError: a fixed microbatch whose logits are too many elements for CUDA's kernels.
    """
    largest = largest_microbatch(device_batch, num_classes, image_size)
    if microbatch_size == "auto":
        return largest
    if microbatch_size * num_classes * image_size**2 > CUDA_ELEMENT_LIMIT:
        raise ConfigError(f"microbatch_size {microbatch_size} makes logits of {microbatch_size} x {num_classes} "
                          f"classes x {image_size}^2 px, over the 2^31 elements CUDA's kernels index; use "
                          f"{largest} or less, or 'auto'")
    return min(microbatch_size, device_batch)


def visible_gpus() -> int:
    return torch.cuda.device_count()


def check_available(device: str) -> None:
    """Refuse to train on a device kind this machine does not have, in one line."""
    if device == "gpu" and not torch.cuda.is_available():
        raise ConfigError("trains on CUDA GPUs and none is available; use --profile cpu")


def check_processes(device: str, processes: int) -> None:
    """Refuse more processes per node than this machine has devices for (one process per GPU)."""
    if device == "gpu" and processes > visible_gpus():
        raise ConfigError(f"gpus is {processes} but this machine has {visible_gpus()} visible CUDA GPU(s); "
                          f"pass gpus {visible_gpus()} or fewer")


def pins_memory(device: str) -> bool:
    """Whether loaders pin host memory: for copies to a GPU."""
    return device == "gpu"


def default_processes(device: str) -> int:
    """Processes per node when the caller names none: every visible GPU, or one on the CPU.

    Raises:
        ConfigError: a GPU profile on a machine without a visible CUDA GPU.
    """
    if device != "gpu":
        return 1
    count = visible_gpus()
    if count == 0:
        raise ConfigError("trains on CUDA GPUs and none is visible here (torch.cuda.device_count() is 0); use "
                          "profile 'cpu', or check CUDA_VISIBLE_DEVICES and the driver")
    return count


def torch_device(kind: str, requested: str | torch.device | None = None) -> torch.device:
    """The torch device for inference: ``requested`` if given, else the profile's kind where it exists here.

    A GPU profile's run read on a machine without CUDA evaluates on the CPU.

    Example:
        >>> torch_device("cpu"), torch_device("gpu", "cpu")
        (device(type='cpu'), device(type='cpu'))
    """
    if requested is not None:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {requested!r}: CUDA is not available here; use device 'cpu'")
        return device
    return torch.device("cuda") if kind == "gpu" and torch.cuda.is_available() else torch.device("cpu")


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Mixed precision as Composer's ``amp_*`` precisions use it, on CUDA; nothing elsewhere or in fp32."""
    dtype = _AUTOCAST.get(precision)
    if dtype is None or device.type != "cuda":
        yield
        return
    with torch.autocast("cuda", dtype=dtype):
        yield


def seconds_from_environment(variable: str, default: float) -> float:
    """A bound on a wait, in seconds: ``default``, or the number the environment variable ``variable`` holds."""
    text = os.environ.get(variable, "")
    try:
        return float(text) if text else default
    except ValueError:
        raise ConfigError(f"{variable}={text!r} is not a number of seconds; unset it, or give one, e.g. "
                          f"{variable}={default:g}") from None


def configure_backends(device: str) -> None:
    """Settings that make a device faster without changing what it computes beyond rounding.

    On a GPU, cuDNN times its convolution algorithms once per input shape and keeps the fastest
    (``cudnn.benchmark``): training crops are all one size, so it pays after the first step. Another
    algorithm rounds differently, so GPU runs are not bit-identical with and without it.
    """
    if device == "gpu":
        torch.backends.cudnn.benchmark = True


def check_shared_memory(workers: int, prefetch_factor: int, batch_bytes: int, shm: Path = Path("/dev/shm")) -> None:
    """Raise ``ConfigError`` when loader workers' prefetched batches cannot fit in ``/dev/shm``.

    Workers hand batches to the trainer through shared memory; ``workers x prefetch_factor`` batches wait
    there at once. A container's default ``/dev/shm`` is 64 MB, and a worker that runs out dies with a
    bus error mid-epoch, so the shortfall is told before training starts.
    """
    if workers == 0 or not shm.is_dir():
        return
    needed = workers * prefetch_factor * batch_bytes
    free = shutil.disk_usage(shm).free
    if needed > free:
        raise ConfigError(f"{workers} loader workers prefetch {workers * prefetch_factor} batches, about "
                          f"{needed / 2**30:.1f} GiB, and {shm} has {free / 2**30:.2f} GiB free; give the container "
                          f"a larger /dev/shm (docker run --shm-size={math.ceil(needed / 2**30) + 1}g), or fewer "
                          f"workers (a profile's num_workers)")


def distributed_backend(device: str) -> str:
    """The collective backend of a multi-process run: NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device == "gpu" else "gloo"

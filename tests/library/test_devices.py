"""Device rules that decide before training: cuDNN's autotuner on GPUs, and /dev/shm for loader workers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from segkit.data import PREFETCH_FACTOR, sample_bytes
from segkit.devices import check_shared_memory, configure_backends
from segkit.errors import ConfigError


def test_gpu_runs_turn_cudnn_s_autotuner_on_and_cpu_runs_leave_it(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    configure_backends("cpu")
    assert torch.backends.cudnn.benchmark is False
    configure_backends("gpu")
    assert torch.backends.cudnn.benchmark is True


def test_prefetched_batches_that_do_not_fit_in_dev_shm_are_one_line_before_training():
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm on this system")
    free = shutil.disk_usage(shm).free
    check_shared_memory(0, PREFETCH_FACTOR, 10 * free)  # no workers: nothing goes through /dev/shm
    check_shared_memory(2, PREFETCH_FACTOR, 1024)
    # One GPU of the a100 profile: 8 workers x 2 batches of 128 images of 512 px (2.1 GB, masks packed) against a bound
    # set just under it, the way a container's 64 MB /dev/shm is.
    batch = 128 * sample_bytes(512)
    assert round(8 * PREFETCH_FACTOR * batch / 1e9, 1) == 2.1
    too_big = free // (8 * PREFETCH_FACTOR) + 1
    with pytest.raises(ConfigError) as refused:
        check_shared_memory(8, PREFETCH_FACTOR, too_big)
    message = str(refused.value)
    assert "\n" not in message and "/dev/shm has" in message and "--shm-size=" in message and "num_workers" in message

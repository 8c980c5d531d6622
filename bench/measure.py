"""What the timing benchmarks share: a one-line description of the host, and how a time is taken.

A ratio from bench/trainer_overhead.py, bench/model_vs_smp.py or bench/data_pipeline.py is only
comparable with another from the same kind of machine, so each prints ``host_line()`` first: the CPU,
its cores, torch's version and threads, the GFLOP/s of a 2048x2048 fp32 matmul (the machine's raw
speed, which says whether a slow number is the code or the host) and the load average (other
work on the machine, which makes every time longer and noisier).

Times are medians over repetitions after warm-up: the median ignores the odd slow repetition (a
page fault, another process) that a mean would absorb.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

MATMUL_SIZE = 2048


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (a container or ``taskset`` can allow fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def matmul_gflops(size: int = MATMUL_SIZE, repeats: int = 5) -> float:
    """GFLOP/s of a ``size x size`` fp32 matmul with torch's current threads (2 size^3 FLOPs each)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    seconds = median_seconds(lambda: torch.mm(a, b), warmup=1, repeats=repeats)
    return 2 * size**3 / seconds / 1e9


def host_line() -> str:
    """One line that identifies the machine a benchmark ran on."""
    return (f"host: {cpu_model()}, {usable_cores()} usable cores of {os.cpu_count()}, torch {torch.__version__} "
            f"with {torch.get_num_threads()} threads, Python {platform.python_version()}, "
            f"{MATMUL_SIZE}x{MATMUL_SIZE} fp32 matmul {matmul_gflops():.0f} GFLOP/s, "
            f"load average {os.getloadavg()[0]:.1f} (1 min; near 0 on an idle machine)")


def median_seconds(run: Callable[[], object], warmup: int, repeats: int) -> float:
    """The median wall-clock seconds of ``repeats`` calls of ``run``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def interleaved_seconds(runs: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each of ``runs``, taking turns call by call.

    Alternating the candidates spreads a slow spell of the machine (a neighbour's job, a change
    of clock speed) over all of them, where timing one after the other would charge it to one.
    """
    for _ in range(warmup):
        for run in runs.values():
            run()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    return seconds

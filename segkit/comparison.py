"""Comparing runs the way MosaicML states its claims, from run histories.

- speedup (mild's claim): the baseline's wall time over the time another run needs to first
  reach the baseline's final mIoU;
- gain at equal cost (medium's claim): another run's mIoU at the baseline's total wall time,
  minus the baseline's final mIoU (what you would have stopping both at the same time);
- final gain (hot's claim): final mIoU minus the baseline's final mIoU.

Wall time is training time including evaluation, as the reference's 3.5 h. Functions take
``segkit.runs.Run`` objects and return plain numbers (None when a target is never reached).
"""

from __future__ import annotations

from segkit.runs import Run


def miou_at(run: Run, wall_time: float) -> float | None:
    """The mIoU of the last evaluation done by ``wall_time`` (None before the first one)."""
    done = [row["miou"] for row in run.history if row["wall_time"] <= wall_time]
    return done[-1] if done else None


def speedup(baseline: Run, run: Run) -> float | None:
    """How many times faster ``run`` first reaches the baseline's final mIoU (None if never).

    Example:
        >>> base = Run(".", history=[{"wall_time": 10, "miou": 20}, {"wall_time": 20, "miou": 30}])
        >>> fast = Run(".", history=[{"wall_time": 4, "miou": 31}])
        >>> speedup(base, fast)
        5.0
    """
    reached = run.time_to_reach(baseline.final["miou"])
    return None if reached is None else baseline.final["wall_time"] / reached


def gain_at_equal_cost(baseline: Run, run: Run) -> float | None:
    """mIoU points of ``run`` over the baseline, both stopped at the baseline's total wall time."""
    miou = miou_at(run, baseline.final["wall_time"])
    return None if miou is None else miou - baseline.final["miou"]


def final_gain(baseline: Run, run: Run) -> float:
    """Final mIoU points of ``run`` over the baseline's final mIoU."""
    return run.final["miou"] - baseline.final["miou"]


def cost_ratio(baseline: Run, run: Run) -> float:
    """Total wall time of ``run`` over the baseline's."""
    return run.final["wall_time"] / baseline.final["wall_time"]

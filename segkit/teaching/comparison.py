"""The reference's published results and its three claims, as data, and how runs measure them.

``PUBLISHED`` holds each recipe's published mIoU and wall time (8xA100, ADE20k); ``CLAIMS`` holds,
for mild, medium and hot, the published figure and the function that measures it from two runs
(the baseline's and the recipe's). Tables, plots, the summary page and the study all read these.

- speedup (mild): the baseline's cost over the cost at which the run first reaches the
  baseline's final mIoU;
- gain at equal cost (medium): the run's mIoU by the baseline's total cost, minus the
  baseline's final mIoU (what you would have stopping both at the same time);
- final gain (hot): final mIoU minus the baseline's final mIoU.

Cost is measured on one of two axes. ``"wall_time"`` is training time including evaluation,
as the reference's hours; it depends on the machine and on what else runs on it.
``"passes"`` counts forward-backward passes through the model (a SAM step makes two): the
work a GPU spends its time on, the same on every machine and for every repetition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from segkit.runs import Run
from segkit.teaching.verdicts import Verdict, verdict


@dataclass(frozen=True)
class Published:
    """A recipe's published result on 8xA100 (MosaicML's ADE20k article)."""

    miou: float  # validation mIoU, single scale
    hours: float  # training wall time on 8xA100


@dataclass(frozen=True)
class Claim:
    """One headline claim: what was published, and the function that measures it from runs."""

    recipe: str  # the recipe the claim is about
    label: str  # e.g. "speedup to the baseline's final mIoU"
    statement: str  # the claim in the article's words, e.g. "reaches the baseline's mIoU 5.4x sooner"
    published: float  # the article's figure
    unit: str  # "x" (a ratio) or "mIoU" (points)
    measure: Callable[..., float | None]  # (baseline run, recipe run, cost axis) -> value, None if not reached

    def holds(self, value: float | None) -> bool:
        """Whether a measured value points the published way: faster than the baseline, or a gain."""
        return value is not None and (value > 1 if self.unit == "x" else value > 0)

    def text(self, value: float | None) -> str:
        if value is None:
            return "not reached"
        return f"{value:.2f}x" if self.unit == "x" else f"{value:+.2f}"


def passes(run: Run, entry: dict[str, Any]) -> int:
    """Forward-backward passes up to a history entry: one per step, two on a SAM step.

    SAM's steps are counted by ``segkit.functional.sam_steps``, the rule ``SAMOptimizer`` steps by.

    Example:
        >>> run = Run(".", info={"plan": {"sam_rho": 0.3, "sam_interval": 2}})
        >>> passes(run, {"step": 10})
        15
    """
    from segkit.functional import sam_steps

    plan = run.info.get("plan", {})
    step = int(entry["step"])
    return step + (sam_steps(step, plan["sam_interval"]) if plan.get("sam_rho") is not None else 0)


def cost(run: Run, entry: dict[str, Any], axis: str = "wall_time") -> float:
    """The cost of a run up to a history entry, on ``axis`` (``"wall_time"`` or ``"passes"``)."""
    return float(entry["wall_time"]) if axis == "wall_time" else float(passes(run, entry))


def total_cost(run: Run, axis: str = "wall_time") -> float:
    return cost(run, run.final, axis)


def miou_at(run: Run, budget: float, axis: str = "wall_time") -> float | None:
    """The mIoU of the last evaluation done within ``budget`` (None before the first one)."""
    done = [row["miou"] for row in run.history if cost(run, row, axis) <= budget]
    return done[-1] if done else None


def cost_to_reach(run: Run, miou: float, axis: str = "wall_time") -> float | None:
    """The cost at which ``run`` first evaluates at or above ``miou`` (None if it never does)."""
    return next((cost(run, row, axis) for row in run.history if row["miou"] >= miou), None)


def speedup(baseline: Run, run: Run, axis: str = "wall_time") -> float | None:
    """How many times sooner ``run`` first reaches the baseline's final mIoU (None if never).

    Example:
        >>> base = Run(".", history=[{"wall_time": 10, "miou": 20}, {"wall_time": 20, "miou": 30}])
        >>> fast = Run(".", history=[{"wall_time": 4, "miou": 31}])
        >>> speedup(base, fast)
        5.0
    """
    reached = cost_to_reach(run, baseline.final["miou"], axis)
    return None if reached is None else total_cost(baseline, axis) / reached


def gain_at_equal_cost(baseline: Run, run: Run, axis: str = "wall_time") -> float | None:
    """mIoU points of ``run`` over the baseline, both stopped at the baseline's total cost.

    Example:
        >>> base = Run(".", history=[{"wall_time": 10, "miou": 20}, {"wall_time": 20, "miou": 30}])
        >>> run = Run(".", history=[{"wall_time": 12, "miou": 29}, {"wall_time": 19, "miou": 33},
        ...                         {"wall_time": 25, "miou": 36}])
        >>> gain_at_equal_cost(base, run)
        3
    """
    miou = miou_at(run, total_cost(baseline, axis), axis)
    return None if miou is None else miou - baseline.final["miou"]


def final_gain(baseline: Run, run: Run, axis: str = "wall_time") -> float:
    """Final mIoU points of ``run`` over the baseline's final mIoU (the axis plays no part)."""
    return run.final["miou"] - baseline.final["miou"]


def cost_ratio(baseline: Run, run: Run, axis: str = "wall_time") -> float:
    """Total cost of ``run`` over the baseline's."""
    return total_cost(run, axis) / total_cost(baseline, axis)


#: The reference's published results (MosaicML, "Mosaic ResNet-101 DeepLabV3+ recipes", 8xA100).
PUBLISHED = {
    "baseline": Published(miou=45.33, hours=3.5),
    "mild": Published(miou=45.48, hours=39 / 60),
    "medium": Published(miou=49.32, hours=3.55),
    "hot": Published(miou=49.91, hours=13.47),
}

#: The three headline claims, each with the function that measures it.
CLAIMS = {
    "mild": Claim("mild", "speedup to the baseline's final mIoU", "reaches the baseline's mIoU 5.4x sooner",
                  5.4, "x", speedup),
    "medium": Claim("medium", "mIoU gain at the baseline's cost",
                    "gains +4.0 mIoU over the baseline at the baseline's cost", 4.0, "mIoU", gain_at_equal_cost),
    "hot": Claim("hot", "final mIoU gain", "gains +4.58 mIoU over the baseline, in any time", 4.58, "mIoU",
                 final_gain),
}


@dataclass(frozen=True)
class StudyResult:
    """One claim as the kit's own study measured it: a value per held-out seed, against one baseline.

    The study's runs are on the ``cpu`` profile; the same seed gives another value on another machine
    (floating-point order), so values from different machines are kept apart, never pooled.
    """

    recipe: str
    baseline: str  # "CE + Dice" (the kit's baseline, as MosaicML's code) or "CE only" (the article's, apparently)
    seeds: tuple[int, ...]
    values: tuple[float | None, ...]  # in the claim's unit; None: not reached on that seed
    source: str  # the study's page, and its machine

    def verdict(self) -> Verdict:
        return verdict(self.values, CLAIMS[self.recipe].unit)


_STUDY_A = "docs/recipe-study.md (machine A, 2026-11-27)"
_STUDY_B = "docs/recipe-study-like-for-like.md (machine B, 2026-12-01)"
_CONTROLS_C = "docs/recipe-study-controls.md (machine C, 2026-12-04)"
#: The per-seed values of the kit's studies, as their pages print them (tests/teaching/test_verdicts.py checks it).
STUDY = (
    StudyResult("mild", "CE + Dice", (101, 102, 103), (None, None, None), _STUDY_A),
    StudyResult("medium", "CE + Dice", (101, 102, 103), (-4.86, -2.91, -4.50), _STUDY_A),
    StudyResult("hot", "CE + Dice", (101, 102, 103), (0.01, 1.85, 2.13), _STUDY_A),
    StudyResult("mild", "CE + Dice", (101, 102), (None, None), _STUDY_B),
    StudyResult("medium", "CE + Dice", (101, 102), (-4.26, -2.25), _STUDY_B),
    StudyResult("hot", "CE + Dice", (101, 102), (2.93, 1.74), _STUDY_B),
    StudyResult("mild", "CE only", (101, 102), (None, None), _STUDY_B),
    StudyResult("medium", "CE only", (101, 102), (-1.11, 0.92), _STUDY_B),
    StudyResult("hot", "CE only", (101, 102), (6.08, 4.91), _STUDY_B),
    StudyResult("hot", "CE + Dice", (101, 102), (0.92, 1.88), _CONTROLS_C),
    StudyResult("hot", "CE only", (101, 102), (6.09, 4.92), _CONTROLS_C),
    # the control for hot's length: the baseline recipe trained as long as hot
    StudyResult("hot", "baseline at hot's length", (101, 102), (-2.98, -2.95), _CONTROLS_C),
)


def study_results(recipe: str) -> list[StudyResult]:
    """The study's results for ``recipe``'s claim, in ``STUDY``'s order."""
    return [result for result in STUDY if result.recipe == recipe]

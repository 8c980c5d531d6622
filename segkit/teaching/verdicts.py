"""From per-seed differences to a verdict that stays inside its own noise.

A claim measured on n seeds (one value per seed: a gain in mIoU points, or a speedup ratio) gets its
mean, its spread (the sample standard deviation) and a 95% t-interval for the mean,
``mean ± t(0.975, n - 1) · sd / √n``. The verdict reads the interval against the value that means
"no effect" (0 points, or a ratio of 1):

- **holds**: the whole interval lies on the published side;
- **contradicts**: the whole interval lies on the other side;
- **inconclusive**: the interval contains "no effect";
- **one seed: anecdotal**: n = 1 has no spread, so no interval.

A seed where the claim could not be measured (mild never reached the baseline's mIoU) is not a number
to average: the verdict counts it, and with any such seed a speedup cannot "hold".

Example:
    >>> print(verdict([0.01, 1.85, 2.13]).text())  # hot's gain in docs/recipe-study.md, seeds 101-103
    +1.33 ± 1.15 (3 seeds; 95% interval -1.53 to +4.19): inconclusive
    >>> print(verdict([-4.86, -2.91, -4.50]).text())  # medium's gain at the baseline's cost, the same seeds
    -4.09 ± 1.04 (3 seeds; 95% interval -6.67 to -1.51): contradicts
    >>> print(verdict([None, None], unit="x").text())  # mild's speedup: never reached the baseline's mIoU
    not reached in any of 2 seeds: contradicts
    >>> print(verdict([0.8]).text())
    +0.80 (1 seed): one seed: anecdotal
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

HOLDS, INCONCLUSIVE, CONTRADICTS, ANECDOTAL = "holds", "inconclusive", "contradicts", "one seed: anecdotal"

_NUMBER = r"[+-]\d+\.\d\d"
#: ``Verdict.text()`` with an interval, as prose quotes it (line breaks allowed): the tests find each one.
QUOTED = re.compile(rf"{_NUMBER}\s+±\s+\d+\.\d\d\s+\(\d+\s+seeds;\s+95%\s+interval\s+{_NUMBER}\s+to\s+{_NUMBER}\):"
                    rf"\s+(?:{HOLDS}|{INCONCLUSIVE}|{CONTRADICTS})")

# t(0.975, df): the two-sided 95% quantile of Student's t for df = 1 .. 30 degrees of freedom.
_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
          2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
          2.045, 2.042)


def t_quantile(degrees_of_freedom: int) -> float:
    """Student's t at 0.975 (a 95% two-sided interval): a table to 30 degrees of freedom, then the
    Cornish-Fisher expansion around the normal's 1.96 (within 0.001 of the exact value there).

    Example:
        >>> t_quantile(2), t_quantile(60)
        (4.303, 2.0)
    """
    if degrees_of_freedom < 1:
        raise ValueError(f"a t-interval needs at least 1 degree of freedom (2 seeds), got {degrees_of_freedom}")
    if degrees_of_freedom <= len(_T_975):
        return _T_975[degrees_of_freedom - 1]
    z, nu = statistics.NormalDist().inv_cdf(0.975), degrees_of_freedom
    return round(z + (z**3 + z) / (4 * nu) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * nu**2), 3)


@dataclass(frozen=True)
class Verdict:
    """Per-seed values of one claim and what they support."""

    values: tuple[float, ...]  # the seeds where the claim was measured
    missing: int  # seeds where it could not be (e.g. "not reached")
    no_effect: float  # 0 for a difference in points, 1 for a ratio
    unit: str  # "mIoU" (points) or "x" (a ratio)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.values) if self.values else None

    @property
    def spread(self) -> float | None:
        """The sample standard deviation over seeds (the ± of the kit's tables)."""
        return statistics.stdev(self.values) if self.n > 1 else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% t-interval for the mean, or None below 2 seeds."""
        if self.n < 2:
            return None
        half = t_quantile(self.n - 1) * self.spread / math.sqrt(self.n)
        return self.mean - half, self.mean + half

    @property
    def word(self) -> str:
        if not self.values:
            return CONTRADICTS if self.missing else "not measured"
        if self.missing:  # a seed that never got there counts against the claim; it is not a number to average
            return CONTRADICTS if self.interval and self.interval[1] < self.no_effect else INCONCLUSIVE
        if self.n == 1:
            return ANECDOTAL
        low, high = self.interval
        if low > self.no_effect:
            return HOLDS
        if high < self.no_effect:
            return CONTRADICTS
        return INCONCLUSIVE

    def number(self, value: float) -> str:
        return f"{value:.2f}x" if self.unit == "x" else f"{value:+.2f}"

    def text(self) -> str:
        """``mean ± sd (n seeds; 95% interval low to high): word``, in one line."""
        if self.n == 0:
            return f"not reached in any of {self.missing} seeds: {self.word}"
        seeds = f"{self.n} seed{'s' if self.n > 1 else ''}"
        if self.missing:
            seeds += f", not reached in {self.missing} more"
        spread = "" if self.spread is None else f" ± {self.spread:.2f}"
        interval = "" if self.interval is None else (
            f"; 95% interval {self.number(self.interval[0])} to {self.number(self.interval[1])}")
        return f"{self.number(self.mean)}{spread} ({seeds}{interval}): {self.word}"


def verdict(values: Sequence[float | None], unit: str = "mIoU") -> Verdict:
    """The verdict on per-seed ``values`` (None: not measured on that seed) of a claim in ``unit``:
    ``"mIoU"`` for a difference in points (no effect: 0), ``"x"`` for a ratio (no effect: 1)."""
    if unit not in ("mIoU", "x"):
        raise ValueError(f"unit must be 'mIoU' or 'x', got {unit!r}")
    present = tuple(float(value) for value in values if value is not None)
    return Verdict(present, len(values) - len(present), 1.0 if unit == "x" else 0.0, unit)

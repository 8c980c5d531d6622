"""The three claims measured from run histories, on both cost axes, against hand-computed values."""

from __future__ import annotations

import pytest

from segkit.runs import Run
from segkit.teaching import comparison
from segkit.teaching.comparison import CLAIMS, PUBLISHED


def run(recipe: str, rows: list[tuple[int, float, float]], sam_interval: int | None = None) -> Run:
    """A run with (step, wall_time, miou) evaluations; SAM every ``sam_interval`` steps if given."""
    plan = {"sam_rho": 0.1 if sam_interval else None, "sam_interval": sam_interval or 1}
    return Run(".", info={"recipe": {"name": recipe}, "plan": plan},
               history=[{"step": s, "wall_time": t, "miou": m, "epoch": s / 10} for s, t, m in rows])


BASELINE = run("baseline", [(10, 10.0, 20.0), (20, 20.0, 30.0), (30, 30.0, 34.0)])


def test_passes_count_two_per_sam_step():
    medium = run("medium", [(4, 1.0, 1.0), (7, 2.0, 2.0)], sam_interval=2)
    assert [comparison.passes(medium, row) for row in medium.history] == [6, 10]
    assert comparison.passes(BASELINE, BASELINE.final) == 30


def test_speedup_on_both_axes():
    mild = run("mild", [(3, 4.0, 25.0), (6, 8.0, 34.5), (9, 12.0, 36.0)])
    assert comparison.speedup(BASELINE, mild) == 30.0 / 8.0
    assert comparison.speedup(BASELINE, mild, axis="passes") == 30 / 6
    never = run("mild", [(3, 4.0, 25.0)])
    assert comparison.speedup(BASELINE, never) is None


def test_gain_at_equal_cost_stops_both_at_the_baselines_cost():
    # By wall time medium's last evaluation within 30 s is at 29 s (mIoU 35); by passes, SAM every
    # second step makes step 20 cost 30 passes (mIoU 33), and step 24 (36 passes) is too late.
    medium = run("medium", [(10, 15.0, 25.0), (20, 29.0, 33.0), (24, 31.0, 38.0)], sam_interval=2)
    medium.history[1]["miou"] = 35.0
    assert comparison.gain_at_equal_cost(BASELINE, medium) == pytest.approx(1.0)
    medium.history[1]["miou"] = 33.0
    assert comparison.gain_at_equal_cost(BASELINE, medium, axis="passes") == pytest.approx(-1.0)
    late = run("medium", [(40, 50.0, 40.0)])
    assert comparison.gain_at_equal_cost(BASELINE, late) is None


def test_final_gain_and_cost_ratio():
    hot = run("hot", [(60, 60.0, 36.5)], sam_interval=1)
    assert comparison.final_gain(BASELINE, hot) == pytest.approx(2.5)
    assert comparison.cost_ratio(BASELINE, hot) == 2.0
    assert comparison.cost_ratio(BASELINE, hot, axis="passes") == 4.0


def test_claims_are_data_with_their_measures():
    assert set(CLAIMS) == {"mild", "medium", "hot"} and set(PUBLISHED) == {"baseline", *CLAIMS}
    assert CLAIMS["mild"].measure is comparison.speedup and CLAIMS["mild"].published == 5.4
    assert CLAIMS["medium"].measure is comparison.gain_at_equal_cost and CLAIMS["hot"].published == 4.58
    # The published claims follow from the published results (to the article's rounding).
    assert PUBLISHED["hot"].miou - PUBLISHED["baseline"].miou == pytest.approx(CLAIMS["hot"].published, abs=0.01)
    assert PUBLISHED["medium"].miou - PUBLISHED["baseline"].miou == pytest.approx(CLAIMS["medium"].published, abs=0.01)
    assert PUBLISHED["baseline"].hours / PUBLISHED["mild"].hours == pytest.approx(CLAIMS["mild"].published, abs=0.05)
    assert CLAIMS["mild"].holds(3.0) and not CLAIMS["mild"].holds(0.9) and not CLAIMS["mild"].holds(None)
    assert CLAIMS["hot"].holds(0.1) and not CLAIMS["hot"].holds(-0.1)
    assert CLAIMS["medium"].text(1.234) == "+1.23" and CLAIMS["mild"].text(None) == "not reached"

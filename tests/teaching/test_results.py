"""Notebook 04's views of four runs: the article's figure, the claims, per-class gains, TTA."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from segkit.runs import Run
from segkit.teaching import results
from segkit.teaching.comparison import PUBLISHED


def run(recipe: str, miou: list[float], seconds: float = 10.0) -> Run:
    history = [{"epoch": i + 1, "step": 10 * (i + 1), "wall_time": seconds * (i + 1), "miou": value}
               for i, value in enumerate(miou)]
    plan = {"sam_rho": 0.3, "sam_interval": 1} if recipe in ("medium", "hot") else {}
    return Run(folder=Path("/runs") / recipe, info={"recipe": {"name": recipe}, "status": "finished", "plan": plan},
               history=history)


@pytest.fixture
def runs() -> dict[str, Run]:
    return {"baseline": run("baseline", [20.0, 30.0, 40.0]), "mild": run("mild", [35.0, 41.0], 4.0),
            "medium": run("medium", [25.0, 38.0, 44.0]), "hot": run("hot", [30.0, 45.0, 50.0], 30.0)}


def test_the_time_figure_puts_runs_and_published_points_on_one_relative_axis(runs):
    figure = results.time_figure(runs)
    traces = {trace.name: trace for trace in figure.data}
    assert list(traces["baseline, this run (baseline)"].x) == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert list(traces["hot, this run (hot)"].x) == pytest.approx([1.0, 2.0, 3.0])
    mild = traces["mild, published (8xA100)"]
    assert mild.x[0] == pytest.approx(PUBLISHED["mild"].hours / PUBLISHED["baseline"].hours)
    assert mild.y[0] == PUBLISHED["mild"].miou
    without_baseline = results.time_figure({"hot": runs["hot"]})
    assert [trace.name for trace in without_baseline.data] == ["hot, this run (hot)"]
    assert list(without_baseline.data[0].x) == [30.0, 60.0, 90.0]


def test_the_claims_table_measures_each_claim_on_both_axes(runs):
    table = results.claims_table(runs)
    rows = {row[0]: row for row in table.rows}
    assert rows["mild"][2] == "5.40x" and rows["mild"][4] == "3.75x"  # 30 s against 8 s to reach 40
    assert rows["medium"][3] == "-15.00"  # within the baseline's 30 passes: medium's evaluation at 20 (25 mIoU)
    assert rows["hot"][3] == "+10.00"
    # the study's columns: its per-seed values through segkit.teaching.verdicts, whatever these runs say
    assert rows["hot"][5] == "+1.33 ± 1.15 (3 seeds; 95% interval -1.53 to +4.19): inconclusive"
    assert rows["hot"][6].endswith("(2 seeds; 95% interval -1.94 to +12.93): inconclusive")
    assert rows["mild"][5] == "not reached in any of 3 seeds: contradicts"
    assert rows["medium"][5].endswith(": contradicts")
    assert results.claims_table({"hot": runs["hot"]}).rows[2][3] == "no run"


def test_class_gains_leave_out_absent_classes_and_order_by_the_baseline():
    nan = math.nan
    scores = {"baseline": {"iou_per_class": [50.0, 90.0, nan, 10.0]},
              "hot": {"iou_per_class": [55.0, 80.0, nan, 30.0]}}
    figure = results.class_gain_figure(scores, ["wall", "sky", "flag", "car"])
    assert list(figure.data[0].x) == ["sky", "wall", "car"] and list(figure.data[0].y) == [-10.0, 5.0, 20.0]
    assert list(results.class_gain_figure(scores, ["wall", "sky", "flag", "car"], most=1).data[0].x) == ["car"]


def test_the_augmentation_table_adds_mmsegmentation_on_a100_only():
    single, augmented = {"hot": {"miou": 40.0}}, {"hot": {"miou": 41.5}}
    a100 = results.augmentation_table(single, augmented, "a100")
    assert a100.rows[0] == ["hot", 40.0, 41.5, "+1.50"]
    assert [row[1:3] for row in a100.rows[1:]] == [[44.60, 46.06], [45.47, 46.35]]
    cpu = results.augmentation_table(single, augmented, "cpu")
    assert len(cpu.rows) == 1 and "a100 profile" in cpu.notes[-1]


def test_the_claims_table_adds_a_column_against_a_ce_only_baseline(runs):
    without = results.claims_table(runs)
    assert len(without.columns) == 7 and "notebook 00 trains it" in " ".join(without.notes)
    ce_only = run("custom", [15.0, 25.0, 35.0])  # lower than the CE + Dice baseline's 40
    table = results.claims_table(runs, ce_only)
    rows = {row[0]: row for row in table.rows}
    assert table.columns[-1] == "here, vs your CE only (passes)"
    assert rows["hot"][7] == "+15.00" and rows["hot"][3] == "+10.00"  # 50 against 35, and against 40
    assert rows["medium"][7] == "-10.00"  # medium's 25 within the baseline's 30 passes, against 35 (not 40)

"""Recipe tables and results against the baseline run and the published numbers."""

from __future__ import annotations

from pathlib import Path

from segkit import recipes
from segkit.runs import Run
from segkit.teaching.tables import Table, recipe_table, results_table, setting, summary_table


def fake_run(recipe: str, history: list[tuple[float, float]], profile: str = "cpu") -> Run:
    """A run whose evaluations are (wall time, mIoU), one per epoch."""
    rows = [{"epoch": i + 1, "step": i + 1, "wall_time": t, "miou": m} for i, (t, m) in enumerate(history)]
    return Run(folder=Path("/runs") / f"{recipe}-{profile}-seed17",
               info={"recipe": {"name": recipe}, "profile": {"name": profile}}, history=rows)


def test_settings_read_like_a_recipe():
    assert setting(recipes.hot(), "sam_interval") == "1"
    assert setting(recipes.baseline(), "sam_interval") == "-"
    assert setting(recipes.baseline(), "mixup_alpha") == "off"
    assert setting(recipes.baseline(), "channels_last") == "no"


def test_recipe_table_changes_and_profile_column():
    table = recipe_table(recipes.mild(), changes_only=True)
    assert table.column("setting") == ["epochs", "learning-rate schedule", "channels-last memory format",
                                       "EMA of the weights: half-life", "EMA: update every"]
    assert table.column("mild") == ["25", "constant", "yes", "1000ba", "10ba"]
    assert all(table.highlight) and "learning rate 0.08" in table.notes[0]
    scaled = recipe_table(recipes.mild(), "cpu", steps_per_epoch=25)
    assert scaled.column("mild on cpu")[:2] == ["8", "constant"]
    assert "EMA of the weights: half-life" in scaled.column("setting")
    assert dict(zip(scaled.column("setting"), scaled.column("mild on cpu"), strict=True))[
        "EMA of the weights: half-life"] == "50ba"


def test_mild_results_test_the_speed_claim():
    baseline = fake_run("baseline", [(10, 5.0), (20, 8.0), (40, 12.0)])
    mild = fake_run("mild", [(8, 9.0), (16, 12.5)])
    table = results_table(mild, baseline)
    assert table.rows[0] == ["mild, here (cpu)", 12.5, "+0.50", "16 s", "0.40x"]
    assert table.rows[2] == ["mild, published (8xA100)", 45.48, "+0.15", "39.0 min", "0.19x"]
    assert table.notes == ["Published: mild reaches the baseline's mIoU 5.4x sooner (39.0 min against the "
                           "baseline's 3.50 h). Here: mild reached the baseline's final mIoU 12.00 after 16 s, "
                           "2.5x sooner than the baseline's 40 s."]
    slow = results_table(fake_run("mild", [(8, 9.0)]), baseline)
    assert "mild did not reach the baseline's final mIoU 12.00 (its best: 9.00)" in slow.notes[0]


def test_gain_claims_and_a_missing_baseline():
    hot = fake_run("hot", [(100, 15.0)])
    table = results_table(hot, fake_run("baseline", [(40, 12.0)]))
    assert table.notes == ["Published: hot gains +4.58 mIoU over the baseline, in any time (13.47 h against the "
                           "baseline's 3.50 h). Here: +3.00 mIoU in 2.50x the baseline's time."]
    alone = results_table(hot, None)
    assert alone.rows[0] == ["hot, here (cpu)", 15.0, None, "1.7 min", None]
    assert alone.notes == ["Published: hot gains +4.58 mIoU over the baseline, in any time (13.47 h against the "
                           "baseline's 3.50 h)."]


def test_summary_table_and_text():
    runs = [fake_run("baseline", [(40, 12.0)]), fake_run("medium", [(44, 14.5)])]
    table = summary_table(runs)
    assert table.column("vs baseline") == ["+0.00", "+2.50"]
    assert table.column("published mIoU") == [45.33, 49.32]
    text = str(Table(["a", "b"], [[1.0, None]], caption="c", notes=["n"]))
    assert text == "c\na     b\n1.00  -\nn"

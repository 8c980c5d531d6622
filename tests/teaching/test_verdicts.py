"""Verdicts over seeds (segkit.teaching.verdicts), the study's per-seed values they read, and every verdict the
teaching quotes."""

from __future__ import annotations

import re

import nbformat
import pytest

from segkit.teaching import verdicts
from segkit.teaching.comparison import CLAIMS, STUDY
from segkit.teaching.notebooks import NOTEBOOKS_DIR
from tests.conftest import REPO

# Student's t at 0.975 from a printed table (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2)
PRINTED_T = {1: 12.706, 2: 4.303, 3: 3.182, 5: 2.571, 10: 2.228, 20: 2.086, 30: 2.042, 60: 2.000, 120: 1.980}


@pytest.mark.parametrize(("degrees", "expected"), PRINTED_T.items())
def test_the_t_quantile_matches_the_printed_table(degrees, expected):
    assert verdicts.t_quantile(degrees) == pytest.approx(expected, abs=0.001)


def test_each_verdict_follows_from_the_interval():
    assert verdicts.verdict([1.0, 1.2, 0.9]).word == verdicts.HOLDS
    assert verdicts.verdict([-1.0, -1.2, -0.9]).word == verdicts.CONTRADICTS
    assert verdicts.verdict([0.01, 1.85, 2.13]).word == verdicts.INCONCLUSIVE  # every seed positive, yet
    assert verdicts.verdict([3.0]).word == verdicts.ANECDOTAL
    assert verdicts.verdict([2.0, 2.2, 1.9], unit="x").word == verdicts.HOLDS  # a ratio: no effect is 1
    assert verdicts.verdict([0.9, 0.8, 0.85], unit="x").word == verdicts.CONTRADICTS
    assert verdicts.verdict([None, None], unit="x").word == verdicts.CONTRADICTS  # never reached
    assert verdicts.verdict([2.0, None, 2.1], unit="x").word == verdicts.INCONCLUSIVE  # one seed never got there
    low, high = verdicts.verdict([0.01, 1.85, 2.13]).interval
    assert (round(low, 2), round(high, 2)) == (-1.53, 4.19)
    with pytest.raises(ValueError, match="unit must be"):
        verdicts.verdict([1.0], unit="points")


def per_seed_rows(page: str) -> dict[int, list[str]]:
    """The "Per seed" table of a study page: seed -> its cells."""
    text = (REPO / "docs" / page).read_text()
    section = text.split("## Per seed", 1)[1].split("\n## ", 1)[0]
    return {int(cells[0]): cells[1:] for cells in
            ([cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
             if re.match(r"\| \d+ \|", line))}


def test_the_study_values_are_the_study_pages_own():
    """segkit.teaching.comparison.STUDY holds what the pages print, seed by seed."""
    columns = {"mild": 1, "medium": 3, "hot": 4}  # mild speedup (passes), medium gain, hot gain
    controls = {"CE + Dice": "| hot against the baseline (", "CE only": "| hot against the baseline without Dice (",
                "baseline at hot's length": "| hot against the baseline at hot's length ("}
    for result in STUDY:
        claim = CLAIMS[result.recipe]
        if "recipe-study-controls.md" in result.source:
            row = next(line for line in (REPO / "docs/recipe-study-controls.md").read_text().splitlines()
                       if line.startswith(controls[result.baseline]))
            printed = [value.strip() for value in row.split("|")[2].split(",")]
        elif result.baseline == "CE + Dice":
            rows = per_seed_rows(result.source.split()[0].removeprefix("docs/"))
            printed = [rows[seed][columns[result.recipe]] for seed in result.seeds]
        else:
            page = (REPO / result.source.split()[0]).read_text()
            row = [line for line in page.splitlines() if line.startswith(f"| {result.recipe}: ")][-1]  # like for like
            printed = [value.strip() for value in row.split("|")[5].split(",")]  # "per seed" against CE only
        assert printed == [claim.text(value) for value in result.values], (result.recipe, result.baseline)


def quoted_verdicts() -> list[tuple[str, str]]:
    """Every verdict with an interval quoted in the notebooks, README and docs: (where, text)."""
    pattern = verdicts.QUOTED
    sources = {path.name: nbformat.read(path, as_version=4) for path in sorted(NOTEBOOKS_DIR.glob("*.ipynb"))}
    texts = {name: "\n".join(cell.source for cell in book.cells) for name, book in sources.items()}
    texts.update({path.name: path.read_text() for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]})
    return [(name, " ".join(found.split())) for name, text in texts.items() for found in pattern.findall(text)]


def controls_table() -> list[tuple[list[float], str]]:
    """The controls page's differences: (per-seed values, the verdict printed beside them)."""
    rows = [line.split("|") for line in (REPO / "docs/recipe-study-controls.md").read_text().splitlines()
            if line.startswith("| ") and "seeds; 95% interval" in line]
    return [([float(value) for value in cells[2].split(",")], cells[3].strip()) for cells in rows]


def test_the_controls_page_prints_the_verdicts_of_its_own_values():
    table = controls_table()
    assert len(table) == 7
    assert [printed for _, printed in table] == [verdicts.verdict(values).text() for values, _ in table]


def test_every_quoted_verdict_is_one_the_study_gives():
    computed = {result.verdict().text() for result in STUDY} | {printed for _, printed in controls_table()}
    quoted = quoted_verdicts()
    assert len(quoted) >= 4  # 02, 03 and more quote them
    assert [(where, text) for where, text in quoted if text not in computed] == []

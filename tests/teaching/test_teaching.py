"""The teaching side of the notebooks: self-checks that start empty and have an answer in the key, the
questions at the end of each notebook and their answers, the glossary, and every number the text quotes
from a measurement tied to the row it comes from. The checks are run by tests/system/test_self_checks.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from segkit.teaching import explain, verdicts
from segkit.teaching.notebooks import NOTEBOOKS_DIR
from tests.conftest import REPO, subprocess_env
from tests.notebook_checks import (
    ALL,
    ANSWER_KEY,
    GLOSSARY,
    check_cells,
    key_answers,
    key_section,
    markdown,
    numbered,
    read,
)


def test_committed_check_cells_start_empty_and_the_key_answers_each():
    for name in ALL:
        book = read(name)
        calls = [cell for cell in book.cells if cell.cell_type == "code" and "notebooks.check(" in cell.source]
        names = [answer for _, answer in check_cells(book)]
        assert len(calls) == len(names) >= 2, name  # every check cell has an empty answer
        for cell, answer in zip(calls, names, strict=True):
            assert re.search(rf"notebooks\.check\(\s*\"[^\"]+\",\s*{answer}\b", cell.source), cell.source
        assert sorted(key_answers(name)) == sorted(names), name


def test_an_answer_left_empty_is_neither_right_nor_wrong(capsys):
    from segkit.teaching.notebooks import check

    assert check("x", ..., 1.0) is False
    assert check("x", 1.0, 1.0) is True
    assert check("x", 3.0, 1.0) is False
    assert check("x", "one", 1.0) is False
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("… x: your answer is still empty") and not lines[0].startswith(("✓", "✗"))
    assert [line[0] for line in lines[1:]] == ["✓", "✗", "✗"]


# --- questions, summary, glossary ---------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_notebook_ends_with_summary_questions_and_references(name):
    book = read(name)
    headings = [source.splitlines()[0] for source in markdown(book) for source in [source] if source]
    for heading in ("## Check yourself", "## Summary", "## Questions", "## References"):
        assert heading in headings, (name, heading)
    order = [headings.index(h) for h in ("## Check yourself", "## Summary", "## Questions", "## References")]
    assert order == sorted(order), (name, headings)
    questions = next(source for source in markdown(book) if source.startswith("## Questions"))
    count = numbered(questions)
    assert count == list(range(1, len(count) + 1)) and len(count) >= 5, name
    answers = numbered(key_section(name, "Questions"))
    assert answers == count, f"{name}: {len(count)} questions, {len(answers)} answers in the key"


def test_every_notebook_links_the_glossary_and_it_defines_the_terms():
    glossary = GLOSSARY.read_text()
    terms = re.findall(r"^- \*\*(.+?)\*\*", glossary, flags=re.MULTILINE)
    for term in ("mIoU", "Ignore index", "Pass", "TTA", "Knee", "Half-life", "rho", "alpha", "EMA", "SAM",
                 "MixUp", "`epoch_scale`", "Output stride", "ASPP", "Profile"):
        assert any(defined.startswith(term) for defined in terms), term
    assert any("NHWC" in defined for defined in terms)
    for name in ALL:
        assert any("](../docs/glossary.md)" in source for source in markdown(read(name))), name
    assert (NOTEBOOKS_DIR / "../docs/glossary.md").resolve() == GLOSSARY


# --- the session's core path ------------------------------------------------------------------

#: The line that marks where a deep dive, or a section of one, starts: under its heading, or first in its cell.
DEEP_DIVE = "*Deep dive: skip in a session.*"


def deep_dive_problems(book: nbformat.NotebookNode) -> list[str]:
    """What breaks the split of a notebook into core and deep-dive cells."""
    problems, previous = [], "core"
    for cell in book.cells:
        tags = cell.metadata.get("tags", [])
        kind = [tag for tag in tags if tag in ("core", "deep-dive")]
        lines = [line for line in cell.source.splitlines() if line.strip()]
        opening = lines[1 if lines and lines[0].startswith("#") else 0] if lines else ""
        if len(kind) != 1:
            problems.append(f"tagged {kind or 'neither core nor deep-dive'}: {cell.source[:60]!r}")
        elif "exercise" in tags and kind != ["core"]:
            problems.append(f"an exercise cell that is not core: {cell.source[:60]!r}")
        elif kind == ["deep-dive"] and (previous == "core" or cell.source.startswith("#")) and not (
                cell.cell_type == "markdown" and opening == DEEP_DIVE):  # a deep dive, or a section of one, starts
            problems.append(f"a deep dive that does not open with {DEEP_DIVE!r}: {cell.source[:60]!r}")
        elif DEEP_DIVE in cell.source and opening != DEEP_DIVE or DEEP_DIVE in cell.source and kind != ["deep-dive"]:
            problems.append(f"the deep-dive line where no deep dive starts: {cell.source[:60]!r}")
        previous = kind[0] if len(kind) == 1 else previous
    return problems


@pytest.mark.parametrize("name", ALL)
def test_every_cell_is_core_or_a_marked_deep_dive(name):
    book = read(name)
    assert deep_dive_problems(book) == []
    core = [cell for cell in book.cells if "core" in cell.metadata.tags]
    assert all(cell in core for cell in book.cells if "notebooks.check(" in cell.source)  # self-checks are core
    assert [cell for cell in book.cells if "parameters" in cell.metadata.tags][0] in core
    deep = [cell for cell in book.cells if "deep-dive" in cell.metadata.tags]
    for heading in ("## Questions", "## References"):
        assert any(cell.source.startswith(heading) for cell in deep), (name, heading)
    # It ends by releasing its memory, in a core cell (the guide: shut the kernel down after it).
    assert book.cells[-1].source == "notebooks.release_memory(globals())" and book.cells[-1] in core


def test_a_deep_dive_without_its_line_is_caught():
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("## A\n\ntext"),
                                           nbformat.v4.new_markdown_cell(f"## B\n\n{DEEP_DIVE}\n\nmore"),
                                           nbformat.v4.new_code_cell("x = 1")])
    for cell, tags in zip(book.cells, (["core"], ["deep-dive"], ["deep-dive"]), strict=True):
        cell.metadata["tags"] = tags
    assert deep_dive_problems(book) == []
    book.cells[1].source = "## B\n\nmore"
    assert deep_dive_problems(book) == ["a deep dive that does not open with '*Deep dive: skip in a session.*': "
                                        "'## B\\n\\nmore'"]
    book.cells[1].metadata["tags"] = ["core", "deep-dive"]
    assert deep_dive_problems(book)[0].startswith("tagged ['core', 'deep-dive']")
    book.cells[0].source = f"## A\n\n{DEEP_DIVE}\n\ntext"  # a core cell marked as a deep dive
    assert deep_dive_problems(book)[0].startswith("the deep-dive line where no deep dive starts: '## A")


def test_the_workshop_times_the_core_path_as_the_bench_does():
    """docs/workshop.md's core-path table and session totals are what bench/core_path.py prints for the
    notebooks as they are: after changing a notebook's cells, run it and put its output in the guide."""
    done = subprocess.run([sys.executable, "bench/core_path.py"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**subprocess_env(), "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    guide = (REPO / "docs" / "workshop.md").read_text()
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(ALL) + 1 and [row for row in rows if row not in guide] == [], \
        "run .venv/bin/python bench/core_path.py and put its table in docs/workshop.md"
    totals = re.findall(r"(\d+\.\d) min at 200 words a minute", done.stdout)
    assert len(totals) == 6 and [total for total in totals if f"{total} min" not in guide] == []


# --- quoted numbers, tied to the rows they come from ---------------------------------------------

#: Rows of the measured docs that the notebooks quote from.
KNEE = "| 48.58 | 36.53 | 0.752 |"  # docs/laptop-regime.md: the cpu profile's full and compressed baseline
STUDY = "docs/recipe-study.md"
CONTROLS = "docs/recipe-study-controls.md"
SEEDS = {seed: row for seed, row in (
    ("101", "| 101 | 49.78 | not reached | 34.68 | -4.86 | +0.01 |"),
    ("102", "| 102 | 48.90 | not reached | 36.01 | -2.91 | +1.85 |"),
    ("103", "| 103 | 49.69 | not reached | 34.50 | -4.50 | +2.13 |"))}
HOT = "| hot | 75 | 1875 | 50.79 ± 1.02 (n=3) | 3.75x |"
LIKE_FOR_LIKE_HOT = "| hot: final mIoU gain | 2.34 ± 0.84 (n=2) | +2.93, +1.74 | 5.50 ± 0.82 (n=2) |"
# segkit/teaching/results.py
MMSEG_80K, MMSEG_160K = '"80k iterations": (44.60, 46.06)', '"160k iterations": (45.47, 46.35)'


def removed(variant: str, value: str, full: str, difference: str) -> str:
    """A row of the study's variants table."""
    return f"| {variant} | {value} (n=1) | {full} (n=1) | {difference} (n=1) |"


#: (file, number as the text writes it, source, the row of the source it comes from). A number copied
#: from a measurement must appear here, and the row must still be in its source.
TIES = [
    ("notebooks/00_baseline.ipynb", "36.53", "docs/laptop-regime.md", KNEE),
    ("notebooks/00_baseline.ipynb", "48.58", "docs/laptop-regime.md", KNEE),
    ("notebooks/00_baseline.ipynb", "0.752", "docs/laptop-regime.md", KNEE),
    ("notebooks/00_baseline.ipynb", "3.75", STUDY, HOT),
    ("notebooks/00_baseline.ipynb", "+5.36", CONTROLS, "| +5.86, +4.86 | +5.36 ± 0.71 (2 seeds;"),
    ("notebooks/00_baseline.ipynb", "+1.25", CONTROLS, "| +0.69, +1.82 | +1.25 ± 0.80 (2 seeds;"),
    ("notebooks/01_mild.ipynb", "0.752", "docs/laptop-regime.md", KNEE),
    ("notebooks/01_mild.ipynb", "35.06 ± 0.83", STUDY, "| mild | 8 | 200 | 35.06 ± 0.83 (n=3) |"),
    ("notebooks/01_mild.ipynb", "49.46 ± 0.49", STUDY, "| baseline | 40 | 1000 | 49.46 ± 0.49 (n=3) |"),
    ("notebooks/01_mild.ipynb", "44.60", "segkit/teaching/results.py", MMSEG_80K),
    ("notebooks/01_mild.ipynb", "45.47", "segkit/teaching/results.py", MMSEG_160K),
    ("notebooks/02_medium.ipynb", "0.09", "docs/laptop-regime.md", "rho 0.09 helped in the old regime"),
    ("notebooks/02_medium.ipynb", "0.15", STUDY, removed("medium without SAM", "46.01", "46.16", "-0.15")),
    ("notebooks/02_medium.ipynb", "0.12", STUDY, removed("medium without MixUp", "46.28", "46.16", "0.12")),
    ("notebooks/02_medium.ipynb", "2.27", STUDY, removed("medium without EMA", "43.89", "46.16", "-2.27")),
    ("notebooks/02_medium.ipynb", "1.07x", "docs/recipes.md", "**A medium step peaks at 1.07x a baseline step**"),
    ("notebooks/02_medium.ipynb", "1.06x", "docs/recipes.md", "Composer's dense path measured 1.06x here"),
    ("notebooks/03_hot.ipynb", "+1.33 ± 1.15", STUDY, "| hot: final mIoU gain | 1.33 ± 1.15 (n=3) |"),
    ("notebooks/03_hot.ipynb", "+0.01", STUDY, SEEDS["101"]),
    ("notebooks/03_hot.ipynb", "3.75x", STUDY, HOT),
    ("notebooks/03_hot.ipynb", "+5.50", "docs/recipe-study-like-for-like.md", LIKE_FOR_LIKE_HOT),
    ("notebooks/03_hot.ipynb", "3.75", STUDY, HOT),
    ("notebooks/03_hot.ipynb", "2.17", STUDY, removed("hot without SAM", "51.96", "49.79", "2.17")),
    ("notebooks/03_hot.ipynb", "3.19", STUDY, removed("hot without MixUp", "52.98", "49.79", "3.19")),
    ("notebooks/04_results.ipynb", "0.752", "docs/laptop-regime.md", KNEE),
    ("notebooks/04_results.ipynb", "+0.01", STUDY, SEEDS["101"]),
    ("notebooks/04_results.ipynb", "+1.85", STUDY, SEEDS["102"]),
    ("notebooks/04_results.ipynb", "+2.13", STUDY, SEEDS["103"]),
    ("notebooks/04_results.ipynb", "+1.33", STUDY, "| hot: final mIoU gain | 1.33 ± 1.15 (n=3) |"),
    ("notebooks/04_results.ipynb", "1.15", STUDY, "| hot: final mIoU gain | 1.33 ± 1.15 (n=3) |"),
    ("notebooks/04_results.ipynb", "+5.50", "docs/recipe-study-like-for-like.md", LIKE_FOR_LIKE_HOT),
    ("notebooks/04_results.ipynb", "44.60", "segkit/teaching/results.py", MMSEG_80K),
    ("notebooks/04_results.ipynb", "46.06", "segkit/teaching/results.py", MMSEG_80K),
    ("notebooks/04_results.ipynb", "45.47", "segkit/teaching/results.py", MMSEG_160K),
    ("notebooks/04_results.ipynb", "46.35", "segkit/teaching/results.py", MMSEG_160K),
    # the workshop's budget of the exercises' runs, from the measured training times
    ("docs/workshop.md", "98 s", "docs/laptop-regime.md", "(316 s against 98 s of training)"),
    ("docs/workshop.md", "316 s", "docs/laptop-regime.md", "(316 s against 98 s of training)"),
    ("docs/workshop.md", "20.6 s", "docs/benchmarks.md", "01_mild: run 20.6 s in the notebook's kernel"),
    ("docs/workshop.md", "89.5 s", "docs/benchmarks.md", "02_medium: run 89.5 s in the notebook's kernel"),
]

#: Numbers the notebooks quote from the article (L. Seguin, C. Stephenson, E. J. Yuen, "5x Faster Image
#: Segmentation Training with MosaicML Recipes", MosaicML 2022), which is not in this repository, and
#: ratios derived from them in the text (0.19 = 39 min / 210 min, 3.85x = 13.47 h / 3.5 h; hot's throughput
#: against the baseline's, 0.49x = (240 / 13.47) / (128 / 3.5) and 0.52x at the article's 256 epochs).
ARTICLE = {"45.33", "45.48", "49.32", "49.91", "44.17", "0.85", "4.58", "+4.58", "1.07x", "13.47", "3.55",
           "3.85x", "+0.85", "+0.87", "0.19", "0.49x", "0.52x"}
#: Numbers the notebooks state as settings or arithmetic of their own (hyperparameters, the toy
#: examples' points), not measurements.
SETTINGS = {"0.08", "0.375", "1.125", "0.05", "1.75"}
#: Numbers the text states from a computation of segkit's, with that computation (checked below).
COMPUTED = {"0.02": lambda: round(float(np.median(explain.mixing_weights(0.2, count=100_000))), 2),  # 03's hint
            "4.303": lambda: verdicts.t_quantile(2)}  # 04's interval: t for 3 seeds


def decimals(text: str) -> list[str]:
    """Numbers with two or more decimals (``0.752``, ``-4.09``, ``+0.01``, ``1.07x``, ``35.06 ± 0.83``),
    as written."""
    return re.findall(r"(?<![\w.])[+-]?\d+\.\d{2,}(?: ± \d+\.\d{2,})?x?(?!\w|\.\d)", text)


def untied(ties: list[tuple[str, str, str, str]], text_of) -> list[str]:
    """The ties whose number is not in their file, or whose row is no longer in its source."""
    problems = []
    for path, number, source, row in ties:
        if number not in text_of(path):
            problems.append(f"{path} no longer quotes {number}")
        if row not in text_of(source) or number.lstrip("+-").rstrip("x") not in row:
            problems.append(f"{path} quotes {number} from {source}, which no longer has the row {row!r}")
    return problems


def repository_text(path: str) -> str:
    if path.endswith(".ipynb"):
        return "\n".join(markdown(nbformat.read(REPO / path, as_version=4)))
    return (REPO / path).read_text()


def test_quoted_numbers_are_tied_to_their_rows():
    assert untied(TIES, repository_text) == []


def test_every_measured_number_in_the_notebooks_is_tied_or_the_article_s():
    for name in ALL:
        path = f"notebooks/{name}.ipynb"
        tied = {number for where, number, _, _ in TIES if where == path}
        # a verdict quoted whole is checked against the study's values by tests/teaching/test_verdicts.py
        loose = [number for number in decimals(verdicts.QUOTED.sub("", repository_text(path)))
                 if number not in tied | ARTICLE | SETTINGS | set(COMPUTED)
                 and number.lstrip("+-") not in ARTICLE | SETTINGS]
        assert not loose, f"{path} quotes {loose} with no row they come from (add them to TIES)"


def test_computed_numbers_are_what_segkit_computes():
    for number, compute in COMPUTED.items():
        assert compute() == float(number), number


def test_a_changed_source_row_is_caught():
    tie = next(tie for tie in TIES if tie[1] == "35.06 ± 0.83")  # mild's, from the study
    path, number, source, row = tie
    changed = repository_text(source).replace(row, row.replace("35.06", "35.16"))

    def text_of(name: str) -> str:
        return changed if name == source else repository_text(name)

    assert untied([tie], text_of) == [f"{path} quotes {number} from {source}, which no longer has the row {row!r}"]
    assert untied([(path, "35.07 ± 0.83", source, row)], repository_text)[0] == f"{path} no longer quotes 35.07 ± 0.83"


def test_the_workshop_quotes_rows_that_exist():
    """`docs/workshop.md` quotes rows of the README's notebook table and the measured docs, as the key does."""
    workshop = (REPO / "docs" / "workshop.md").read_text()
    sources = "".join((REPO / path).read_text() for path in
                      ("README.md", "docs/benchmarks.md", "docs/laptop-regime.md", "docs/recipe-study.md"))
    quoted = [match.strip() for match in re.findall(r"`(\|[^`]+)`", workshop)]
    assert len(quoted) >= 4
    assert [row for row in quoted if row not in sources] == []


def test_the_key_answers_are_python_the_learner_could_type():
    for name in ALL:
        for answer, expression in key_answers(name).items():
            compile(f"{answer} = {expression}", f"{name} key", "exec")
    assert "..." not in "".join(str(key_answers(name)) for name in ALL)


def test_a_missing_key_section_is_an_error():
    with pytest.raises(ValueError):
        key_section("05_spicy", "Questions", key="## 00 · The baseline (`00_baseline.ipynb`)\n\n### Questions\n1. a\n")
    assert Path(ANSWER_KEY).is_file()

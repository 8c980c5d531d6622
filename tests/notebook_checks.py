"""The notebooks as the teaching tests read them: their "Check yourself" cells, the answer key's answers,
and the notebooks with those answers written in (tests/teaching/test_teaching.py, tests/system/test_self_checks.py)."""

from __future__ import annotations

import copy
import re

import nbformat

from segkit.teaching.notebooks import NOTEBOOKS, NOTEBOOKS_DIR, RESULTS_NOTEBOOK
from tests.conftest import REPO

#: Every notebook, in the order they run (04 compares the runs of 00-03).
ALL = [*NOTEBOOKS, RESULTS_NOTEBOOK]
SMOKE = {"profile": "tiny", "duration": "2ba"}
ANSWER_KEY = REPO / "docs" / "answer-key.md"
GLOSSARY = REPO / "docs" / "glossary.md"
#: The learner's empty answer in a "Check yourself" cell: ``my_x = ...  # what to compute``.
EMPTY_ANSWER = re.compile(r"^(my_\w+) = \.\.\.(?:[ \t]+#.*)?$", re.MULTILINE)
RIGHT, WRONG = "teaching-right", "teaching-wrong"


def read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)


def markdown(book: nbformat.NotebookNode) -> list[str]:
    return [cell.source for cell in book.cells if cell.cell_type == "markdown"]


def check_cells(book: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """(cell index, answer name) of each "Check yourself" code cell."""
    return [(index, match.group(1)) for index, cell in enumerate(book.cells) if cell.cell_type == "code"
            for match in [EMPTY_ANSWER.search(cell.source)] if match]


def key_section(notebook: str, heading: str, key: str | None = None) -> str:
    """The text of ``### heading`` in the answer key's section of ``notebook`` (``## NN · ... (`NAME.ipynb`)``)."""
    key = ANSWER_KEY.read_text() if key is None else key
    sections = re.split(r"^## ", key, flags=re.MULTILINE)
    (section,) = [text for text in sections if f"(`{notebook}.ipynb`)" in text.split("\n", 1)[0]]
    parts = re.split(r"^### ", section, flags=re.MULTILINE)
    (part,) = [text for text in parts if text.startswith(heading + "\n")]
    return part


def key_answers(notebook: str) -> dict[str, str]:
    """The answer key's "Check yourself" answers of a notebook: ``{"my_miou": "100 * ..."}``."""
    found = re.findall(r"^- `(my_\w+) = (.+?)`", key_section(notebook, "Check yourself"), flags=re.MULTILINE)
    return dict(found)


def numbered(text: str) -> list[int]:
    return [int(number) for number in re.findall(r"^(\d+)\. ", text, flags=re.MULTILINE)]


def with_answers(book: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """A copy of the notebook in which each "Check yourself" cell, left as it is, is followed by one copy
    with the answer (tagged ``teaching-right``) and one with a wrong answer (``teaching-wrong``)."""
    taught = copy.deepcopy(book)
    for index, name in reversed(check_cells(book)):
        cell = book.cells[index]
        for tag, value in ((RIGHT, answers[name]), (WRONG, f"2 * ({answers[name]}) + 1")):
            answered = nbformat.v4.new_code_cell(EMPTY_ANSWER.sub(f"{name} = {value}", cell.source, count=1))
            answered.metadata["tags"] = [tag]
            taught.cells.insert(index + 1 + (tag == WRONG), answered)
    return taught


def printed(cell: nbformat.NotebookNode) -> str:
    return "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")

"""Each notebook's "Check yourself" cells, run: as committed (the answer still ``...``), with the answer key's
answer (✓) and with a wrong one (✗). The notebooks run once, headless (papermill, the tiny profile, 2 batches)."""

from __future__ import annotations

import os

import nbformat
import papermill
import pytest

from tests.conftest import REPO
from tests.notebook_checks import ALL, RIGHT, SMOKE, WRONG, key_answers, printed, read, with_answers


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    """The five notebooks, executed in order into one folder with the answers injected."""
    previous = os.environ.get("PYTHONPATH")  # kernels import this checkout's segkit, whatever is installed
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), previous) if p)
    root = tmp_path_factory.mktemp("taught")
    parameters = {**SMOKE, "save_folder": str(root / "runs")}
    try:
        executed = {}
        for name in ALL:
            source = root / f"{name}-answered.ipynb"
            nbformat.write(with_answers(read(name), key_answers(name)), source)
            executed[name] = root / f"{name}.ipynb"
            papermill.execute_notebook(source, executed[name], parameters=parameters, kernel_name="python3",
                                       progress_bar=False, cwd=root, engine_name="segkit")  # segkit's watchful client
        yield {name: nbformat.read(path, as_version=4) for name, path in executed.items()}
    finally:
        if previous is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = previous


@pytest.mark.parametrize("name", ALL)
def test_each_check_says_empty_then_right_then_wrong(taught, name):
    book = taught[name]
    checks = [(cell, cell.metadata.get("tags", [])) for cell in book.cells
              if cell.cell_type == "code" and "notebooks.check(" in cell.source]
    empty = [cell for cell, tags in checks if RIGHT not in tags and WRONG not in tags]
    right = [cell for cell, tags in checks if RIGHT in tags]
    wrong = [cell for cell, tags in checks if WRONG in tags]
    assert len(empty) == len(right) == len(wrong) >= 2, name
    for cell in empty:  # as committed: the learner has not answered yet
        assert "your answer is still empty" in printed(cell) and "✓ " not in printed(cell), cell.source
        assert "✗ " not in printed(cell), cell.source
    for cell in right:  # the answer key's answer: the formula the notebook teaches, checked against segkit
        assert printed(cell).startswith("✓ ") and "✗ " not in printed(cell), (cell.source, printed(cell))
    for cell in wrong:
        assert printed(cell).startswith("✗ ") and "✓ " not in printed(cell), (cell.source, printed(cell))

"""The committed notebooks as files: no outputs, one parameters cell of literals whose names and defaults are
exactly the notebooks' ``Job`` fields (whose defaults are ``segkit.spec``'s), and papermill reads them all."""

from __future__ import annotations

import ast

import nbformat
import papermill
import pytest

from segkit.teaching import notebooks
from segkit.teaching.notebooks import NOTEBOOKS, NOTEBOOKS_DIR, RESULTS_NOTEBOOK


def code_cells(book: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in book.cells if cell.cell_type == "code"]


def test_committed_notebooks_have_no_outputs_and_one_parameters_cell():
    for name, recipe in {**NOTEBOOKS, RESULTS_NOTEBOOK: None}.items():
        book = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
        nbformat.validate(book)
        assert book.metadata.kernelspec.name == "python3"
        assert "widgets" not in book.metadata
        cells = code_cells(book)
        for cell in cells:
            assert cell.outputs == [] and cell.execution_count is None, (name, cell.source)
        # The first code cell installs segkit in Colab and does nothing elsewhere (tests/system/test_colab.py);
        # the parameters cell comes right after it.
        tagged = [cell for cell in cells if "parameters" in cell.metadata.get("tags", [])]
        assert len(tagged) == 1 and tagged[0] is cells[1], name
        # Literals only, exactly the parameters of segkit.teaching.notebooks, with their defaults.
        values = {}
        for node in ast.parse(tagged[0].source).body:
            assert isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Constant), name
            values[node.target.id] = node.value.value
        # The next code cell checks them.
        if recipe is None:  # notebook 04 takes the same parameters, and the runs to compare
            assert values == {**notebooks.PARAMETERS, "run_folders": ""}, name
            assert "notebooks.start_results(globals())" in cells[2].source
        else:
            assert values == notebooks.PARAMETERS, name
            assert f'notebooks.start(globals(), recipe="{recipe}")' in cells[2].source


@pytest.mark.parametrize("name", [*NOTEBOOKS, RESULTS_NOTEBOOK])
def test_papermill_reads_every_parameter_of_the_notebooks(name):
    """`papermill --help-notebook` lists every parameter (a comment with '=' would hide its line)."""
    inferred = papermill.inspect_notebook(NOTEBOOKS_DIR / f"{name}.ipynb")
    expected = {*notebooks.PARAMETERS, *(["run_folders"] if name == RESULTS_NOTEBOOK else [])}
    assert set(inferred) == expected


def test_the_parameters_defaults_are_the_library_s_stated_once():
    """The parameters cells hold literals (papermill reads them), so this is the one place they are tied to
    the defaults of segkit.spec, which the command line and run_spec read too."""
    from segkit import spec

    assert (notebooks.PARAMETERS["profile"], notebooks.PARAMETERS["save_folder"], notebooks.PARAMETERS["seed"]) == (
        spec.DEFAULT_PROFILE, spec.DEFAULT_SAVE_FOLDER, spec.DEFAULT_SEED)
    assert NOTEBOOKS["00_baseline"] == spec.DEFAULT_RECIPE

"""bench/mutants.py breaks segkit one named bug at a time: each of its pieces of source must still be found,
exactly once, where it says, and each test it names must exist (or the mutation check checks nothing)."""

from __future__ import annotations

import pytest

from tests.conftest import REPO, load_bench


@pytest.mark.parametrize("mutant", load_bench("mutants").MUTANTS, ids=lambda mutant: mutant.name)
def test_each_mutant_still_applies(mutant):
    assert (REPO / mutant.file).read_text().count(mutant.original) == 1, (mutant.file, mutant.original)
    for test in mutant.tests:
        path, _, name = test.partition("::")
        assert (REPO / path).is_file(), path
        assert not name or f"def {name.split('[')[0]}(" in (REPO / path).read_text(), test

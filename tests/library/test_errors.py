"""Errors: one type per kind of bad input, and one line to show."""

from __future__ import annotations

from segkit.errors import ConfigError, DataError, RunError, SegkitError, WeightsError, one_line


def test_every_kind_is_a_segkit_error_and_a_value_error():
    for kind in (ConfigError, DataError, RunError, WeightsError):
        assert issubclass(kind, SegkitError) and issubclass(kind, ValueError)


def test_one_line_keeps_the_last_non_empty_line():
    wrapped = DataError("Caught DataError in DataLoader worker process 0.\nTraceback ...\n\ncannot read image x.jpg\n")
    assert one_line(wrapped) == "cannot read image x.jpg"
    assert one_line(RunError("")) == "RunError"

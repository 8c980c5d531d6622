"""The errors segkit raises for bad input; each message names the thing and what to do.

The command line prints any of these as one line and exits with status 2; the Python API
raises them as they are. All derive from ``SegkitError`` (a ``ValueError``), so callers can
catch one type.
"""


class SegkitError(ValueError):
    """Base class: a user-facing problem with a message that says what to do."""


class ConfigError(SegkitError):
    """A recipe, profile, parameter or command-line value is unknown, out of range or mistyped."""


class DataError(SegkitError):
    """A dataset folder or one of its files is missing, unreadable or inconsistent."""


class WeightsError(SegkitError):
    """Pretrained weights or a checkpoint cannot be loaded into the model being built."""


class RunError(SegkitError):
    """A run folder cannot be written, or training cannot continue (for example a non-finite loss)."""


def one_line(error: BaseException) -> str:
    """The message of an error as one line (DataLoader workers wrap messages in a traceback)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__

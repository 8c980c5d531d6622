"""papermill's engine ``segkit`` (``papermill --engine segkit IN OUT``), as the package's entry point names it.

papermill loads its entry points while it is being imported, and ``segkit.teaching.headless`` imports papermill:
so the entry point is this small class, which imports nothing at load time and hands every call to
``segkit.teaching.headless.WatchfulEngine``.
"""

from __future__ import annotations

from typing import Any


class SegkitEngine:
    """The papermill engine interface, delegated to ``segkit.teaching.headless.WatchfulEngine``."""

    @classmethod
    def execute_notebook(cls, *args: Any, **kwargs: Any) -> Any:
        from segkit.teaching.headless import WatchfulEngine

        return WatchfulEngine.execute_notebook(*args, **kwargs)

    @classmethod
    def nb_kernel_name(cls, *args: Any, **kwargs: Any) -> Any:
        from segkit.teaching.headless import WatchfulEngine

        return WatchfulEngine.nb_kernel_name(*args, **kwargs)

    @classmethod
    def nb_language(cls, *args: Any, **kwargs: Any) -> Any:
        from segkit.teaching.headless import WatchfulEngine

        return WatchfulEngine.nb_language(*args, **kwargs)

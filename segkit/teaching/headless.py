"""The main job, headless: the notebooks executed by papermill through a client that never waits forever.

``run_all`` is ``segkit notebooks``: it executes the five notebooks in order (so 01-03 find the
baseline run of 00, and 04 all four runs) and writes the executed notebooks, each also as an HTML
page (``segkit.teaching.pages``), the run folders and a summary page (``segkit.teaching.report``) under one folder.

Why a client of its own. nbclient (papermill's executor) waits for each cell's ``execute_reply``
with one unbounded wait on the shell socket, and it imitates an ``ipywidgets.Output`` by answering
every output captured in one with a message sent on that same socket, through a blocking shadow
of the asyncio socket. That send can consume the wakeup of the pending wait: the reply then sits
unread in the client's socket while the kernel is idle, and the run waits forever
(jupyter/nbclient#312). ``WatchfulClient`` never waits on the shell channel for longer than
``Watchdogs.reply_poll``, so a stranded reply is read at the next slice, and it has two watchdogs
for a kernel that really does not answer: one for a request the kernel never starts, one for a
cell the kernel finished (it published ``idle``) whose reply never came. Neither limits how long a
healthy cell runs: an ``a100`` cell trains for hours. A cell that trips one fails with
``KernelStalled``, and ``run_all`` runs that notebook once more (finished runs are reused,
interrupted ones resume from their checkpoint).

The same client is papermill's engine ``segkit`` (``papermill --engine segkit IN OUT``). Its
kernels run with ``SEGKIT_HEADLESS=1``, so the live curves do not stream their redraws where
nobody watches (``segkit.teaching.plots.LiveCurves``); the saved notebook keeps the final figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any

import papermill
from nbclient.client import timestamp
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import ensure_async, run_sync
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.log import logger
from papermill.utils import merge_kwargs, remove_args

from segkit import recipes
from segkit.errors import ConfigError, SegkitError, one_line
from segkit.runs import METRICS_FILE, Run
from segkit.teaching.notebooks import NOTEBOOKS, NOTEBOOKS_DIR, RESULTS_NOTEBOOK, check_parameters, cli_values
from segkit.teaching.plots import HEADLESS_VARIABLE
from segkit.teaching.report import Outcome, write_summary

#: The papermill engine name of ``WatchfulClient`` (also registered by the package's entry point).
ENGINE_NAME = "segkit"


@dataclass(frozen=True)
class Watchdogs:
    """How the headless client waits on a kernel. None of these limits a healthy cell's run time."""

    reply_poll: float = 1.0  # s: the longest single wait on the shell channel (a stranded reply costs at most this)
    start_grace: float = 60.0  # s: a request not started by then gets one harmless kick, then as long again
    idle_grace: float = 30.0  # s: after the kernel published 'idle' for a cell, its reply must arrive within this
    iopub_grace: int = 300  # s: after the reply, how long the cell's last outputs and 'idle' may take (loaded host)
    final_reply: float = 120.0  # s: the closing kernel_info reply, after the last cell


class KernelStalled(CellTimeoutError):
    """The kernel did not start a cell, or finished it without a reply: a watchdog fired.

    A ``CellTimeoutError`` for papermill and nbclient (the notebook stops there and is saved);
    ``run_all`` reruns the notebook once.
    """


class WatchfulClient(PapermillNotebookClient):
    """papermill's notebook client with bounded waits on the shell channel and two watchdogs."""

    def __init__(self, nb_man, watchdogs: Watchdogs = Watchdogs(), **kwargs):
        super().__init__(nb_man, iopub_timeout=watchdogs.iopub_grace, **kwargs)
        self.watchdogs = watchdogs
        self._started_requests: set[str] = set()
        self._cell_index = -1

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        self._cell_index = cell_index
        return await super().async_execute_cell(cell, cell_index, execution_count, store_history)

    execute_cell = run_sync(async_execute_cell)  # nbclient binds its own coroutine the same way

    def process_message(self, msg, cell, cell_index):
        # Anything the kernel publishes for a request ('busy' first) shows it has started it.
        self._started_requests.add(msg["parent_header"].get("msg_id"))
        return super().process_message(msg, cell, cell_index)

    def _stalled(self, cell, what: str) -> KernelStalled:
        first_line = next((line for line in cell.source.splitlines() if line.strip()), "").strip()
        return KernelStalled(f"cell {self._cell_index} ({first_line[:60]!r}): {what}")

    async def _async_poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive):
        watchdogs = self.watchdogs
        sent = time.monotonic()
        deadline = None if timeout is None else sent + timeout
        idle_since = None
        kicked = False
        try:
            while True:
                wait = watchdogs.reply_poll
                if deadline is not None:
                    wait = max(0.0, min(wait, deadline - time.monotonic()))
                try:
                    msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=wait))
                except Empty:
                    now = time.monotonic()
                    await self._async_check_alive()  # DeadKernelError when the process is gone
                    if deadline is not None and now >= deadline:
                        await self._async_handle_timeout(timeout, cell)  # nbclient's CellTimeoutError
                    if msg_id not in self._started_requests and now - sent > watchdogs.start_grace:
                        if kicked:
                            raise self._stalled(cell, f"the kernel is alive but did not start this cell within "
                                                      f"{2 * watchdogs.start_grace:g} s") from None
                        # A new request makes a kernel read its shell socket again; no get_msg is pending now.
                        await ensure_async(self.kc.kernel_info())
                        kicked, sent = True, now
                    if task_poll_output_msg.done():
                        # The output task also ends when it fails (papermill could not save the output notebook:
                        # a full disk, a replaced path): that failure is the error, not a kernel gone quiet.
                        failure = None if task_poll_output_msg.cancelled() else task_poll_output_msg.exception()
                        if failure is not None:
                            raise failure from None
                        idle_since = idle_since or now
                        if now - idle_since > watchdogs.idle_grace:
                            raise self._stalled(cell, f"the kernel finished this cell (it went idle) but its reply "
                                                      f"did not arrive within {watchdogs.idle_grace:g} s") from None
                    continue
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue  # e.g. the kick's kernel_info_reply
                if self.record_timing:
                    cell["metadata"]["execution"]["shell.execute_reply"] = timestamp(msg)
                try:
                    await asyncio.wait_for(task_poll_output_msg, self.iopub_timeout)
                except (asyncio.TimeoutError, Empty):
                    # A healthy cell on a loaded host: its last outputs are late, not wrong. Say so and go on.
                    self.log.warning(f"cell {self._cell_index}: no 'idle' from the kernel {self.iopub_timeout} s "
                                     f"after its reply; outputs published later are not in the notebook")
                return msg
        finally:
            task_poll_kernel_alive.cancel()

    async def async_wait_for_reply(self, msg_id, cell=None):
        """A reply outside a cell (papermill's closing ``kernel_info``): polled in slices, bounded."""
        deadline = time.monotonic() + self.watchdogs.final_reply
        while time.monotonic() < deadline:
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=self.watchdogs.reply_poll))
            except Empty:
                await self._async_check_alive()
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg
        raise KernelStalled(f"the kernel did not answer a kernel_info request within {self.watchdogs.final_reply:g} s "
                            f"after the last cell")

    wait_for_reply = run_sync(async_wait_for_reply)


class WatchfulEngine(NBClientEngine):
    """papermill's nbclient engine with ``WatchfulClient``, its kernel marked headless."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None, stderr_file=None,
                                 start_timeout=60, execution_timeout=None, watchdogs: Watchdogs | None = None,
                                 **kwargs):
        kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
        settings = merge_kwargs(kwargs, timeout=execution_timeout or None, startup_timeout=start_timeout,
                                kernel_name=kernel_name, log=logger, log_output=log_output,
                                stdout_file=stdout_file, stderr_file=stderr_file)
        client = WatchfulClient(nb_man, watchdogs or Watchdogs(), **settings)
        return client.execute(env={**os.environ, HEADLESS_VARIABLE: "1"})


papermill_engines.register(ENGINE_NAME, WatchfulEngine)


def execute_notebook(source: Path, output: Path, parameters: dict[str, Any], kernel_name: str,
                     cell_timeout: float | None = None, watchdogs: Watchdogs | None = None) -> None:
    """Execute one notebook with papermill through ``WatchfulClient``; the output is saved whatever happens.

    Raises:
        papermill.PapermillExecutionError: a cell raised.
        KernelStalled: a watchdog fired. nbclient's ``CellTimeoutError``: a cell ran over ``cell_timeout``.
        nbclient's ``DeadKernelError``: the kernel process died.
    """
    papermill.execute_notebook(source, output, parameters=parameters, kernel_name=kernel_name,
                               engine_name=ENGINE_NAME, progress_bar=False,
                               execution_timeout=math.ceil(cell_timeout) if cell_timeout else None,
                               watchdogs=watchdogs)


@contextlib.contextmanager
def current_python_kernel() -> Iterator[str]:
    """A ``python3`` kernelspec that runs this Python, found by Jupyter before any other ``python3``."""
    with tempfile.TemporaryDirectory(prefix="segkit-kernel-") as folder:
        spec = Path(folder) / "kernels" / "python3"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            # log level: ipykernel warns at every start that it talks over local TCP, unencrypted
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                     "--IPKernelApp.log_level=ERROR"],
            "display_name": "Python 3 (ipykernel)", "language": "python"}))
        previous = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (folder, previous) if p)
        try:
            yield "python3"
        finally:
            if previous is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = previous


def select_notebooks(only: Sequence[str] | None) -> list[str]:
    """Notebook names from ``--only`` values: ``03_hot``, ``03_hot.ipynb``, the recipe ``hot``, or ``results``."""
    keys = {**NOTEBOOKS, RESULTS_NOTEBOOK: "results"}
    if not only:
        return list(keys)
    chosen = []
    for item in only:
        key = Path(item).stem
        match = next((name for name, short in keys.items() if key in (name, short)), None)
        if match is None:
            raise ConfigError(f"unknown notebook {item!r}; choose from {', '.join(keys)} "
                              f"(or their recipes, or results)")
        chosen.append(match)
    return [name for name in keys if name in chosen]


def run_notebook(name: str, source: Path, output: Path, parameters: dict[str, Any], kernel_name: str,
                 cell_timeout: float | None = None, watchdogs: Watchdogs | None = None) -> str | None:
    """Execute one notebook of the main job, once more if a watchdog fired; its error line, or None."""
    for attempt in (1, 2):
        try:
            execute_notebook(source, output, parameters, kernel_name, cell_timeout, watchdogs)
            return None
        except papermill.PapermillExecutionError as failure:
            return (f"notebook {name}.ipynb failed in cell In [{failure.exec_count}] "
                    f"({failure.ename}: {one_line(Exception(failure.evalue))})")
        except KernelStalled as failure:
            error = f"notebook {name}.ipynb stopped in {failure}"
            if attempt == 1:
                print(f"{name}: {error}; running the notebook again (finished runs are reused, "
                      f"interrupted ones resume)", flush=True)
        except (CellTimeoutError, DeadKernelError) as failure:
            reason = str(failure).strip().splitlines()[0] if str(failure).strip() else ""
            return f"notebook {name}.ipynb stopped: {type(failure).__name__}: {reason}"
    return error


def run_all(out: str | Path, only: Sequence[str] | None = None, parameters: dict[str, Any] | None = None,
            notebooks_dir: str | Path | None = None, cell_timeout: float | None = None,
            watchdogs: Watchdogs | None = None) -> list[Outcome]:
    """Execute the notebooks headless; write them, their pages, their runs and a summary page to ``out``.

    Args:
        out: output folder: ``NAME.ipynb`` and ``NAME.html`` per notebook, ``runs/`` (the run folders,
            unless the ``save_folder`` parameter says otherwise) and ``index.html``, the summary page.
        only: notebook names (or recipes) to run; default all five, in order.
        parameters: notebook parameters, as papermill's ``-p`` (strings are typed the same way).
        notebooks_dir: where the notebooks are (default: ``notebooks/`` of this checkout).
        cell_timeout: seconds any one cell may run, a hard limit (default none: an ``a100`` cell trains
            for hours). A cell over it fails its notebook.
        watchdogs: how the client waits on a kernel (``Watchdogs``); a notebook whose cell trips a
            watchdog runs once more.

    Returns:
        One ``Outcome`` per notebook.

    Raises:
        ConfigError: a bad parameter or notebook name (before anything runs).
        SegkitError: a notebook failed (after the others ran and the summary was written); the
            message names the notebook and the cell.
    """
    from segkit.teaching.pages import add_pictures, write_page

    out = Path(out).expanduser()
    values = cli_values(dict(parameters or {}))
    if "run_name" in values:
        raise ConfigError("parameter run_name names one run, and the main job trains four; leave it out")
    values["save_folder"] = str(Path(values.get("save_folder") or out / "runs").expanduser().absolute())
    job = check_parameters(values, "baseline")
    names = select_notebooks(only)
    source = Path(notebooks_dir) if notebooks_dir else NOTEBOOKS_DIR
    missing = [name for name in names if not (source / f"{name}.ipynb").is_file()]
    if missing:
        raise ConfigError(f"notebook {source / missing[0]}.ipynb not found; run from a clone of the segkit "
                          f"repository (the notebooks are not part of the installed package)")
    out.mkdir(parents=True, exist_ok=True)
    outcomes = []
    began = time.monotonic()
    with current_python_kernel() as kernel:
        for name in names:
            output = out / f"{name}.ipynb"
            print(f"{name}: running, writing {output}", flush=True)
            started = time.monotonic()
            error = run_notebook(name, source / f"{name}.ipynb", output, values, kernel, cell_timeout, watchdogs)
            seconds = time.monotonic() - started
            run = None
            if name in NOTEBOOKS:
                run_folder = dataclasses.replace(job, recipe=recipes.get(NOTEBOOKS[name])).run_folder()
                run = Run.load(run_folder) if (run_folder / METRICS_FILE).is_file() else None
            page = None
            if output.is_file():
                add_pictures(output)
                page = write_page(output)
            outcomes.append(Outcome(name, output, seconds, run, error, page))
            status = error or (f"mIoU {run.final.get('miou', math.nan):.2f}" if run else "done")
            print(f"{name}: {seconds:.0f} s, {status}", flush=True)
    page = write_summary(out / "index.html", outcomes)
    print(f"all notebooks: {time.monotonic() - began:.0f} s; summary page {page}", flush=True)
    failed = [outcome for outcome in outcomes if outcome.error]
    if failed:
        others = f" ({len(failed) - 1} more failed)" if len(failed) > 1 else ""
        raise SegkitError(f"{failed[0].error}; its output so far is in {failed[0].output}{others}")
    return outcomes

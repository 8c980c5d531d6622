"""The headless runner under load: cells that end on Output-widget traffic, executed through a client.

Two patterns, as the hang's reproduction (jupyter/nbclient#312) has them:
    segkit  LiveCurves' own pattern: a few redraws inside an ``ipywidgets.Output``, then ``finish``
            (the Output emptied, the final figure displayed, a line printed).
    wide    each cell ends on one large Output update (50,000 points): the widest race window.

Clients (``--client``):
    segkit    ``segkit.teaching.headless.WatchfulClient``, as ``segkit notebooks`` runs it.
    papermill papermill's default client with no cell timeout, as the main job ran before; a cell whose
              reply has not come ``--hang-after`` s after the kernel's 'idle' is counted as a hang, and
              released by re-checking the client's shell socket (else the run would wait forever).

Counted per cell: the time from the kernel's 'idle' (as the client read it) to the reply being read.
A cell is *late* when that exceeds ``--late`` s (2 s, the reproduction's criterion), a *hang* as above
(or, for segkit's client, when a watchdog fired). ``--load N`` runs N CPU-burning processes meanwhile.

    .venv/bin/python bench/runner_stress.py --client segkit --load 2 --notebooks 40 --segkit-cells 48 --wide-cells 2

Notebooks of about 50 cells: papermill saves the whole notebook after every cell, and each cell's figures
and the Output widgets' state stay in it, so a notebook of hundreds of such cells spends its time saving.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty

import nbformat
import papermill
import zmq
from nbclient.util import ensure_async
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.log import logger
from papermill.utils import merge_kwargs, remove_args

from segkit.teaching.headless import KernelStalled, Watchdogs, WatchfulClient, WatchfulEngine, current_python_kernel

SETUP = '''\
import time
import ipywidgets
from IPython.display import display

def figure(points, title):
    xs = list(range(points))
    return {"application/vnd.plotly.v1+json": {"data": [{"type": "scatter", "x": xs, "y": xs, "mode": "lines"}],
                                               "layout": {"title": {"text": title}}},
            "text/plain": title}

class Live:
    """What segkit.teaching.plots.LiveCurves does with its Output widget in JupyterLab."""
    def __init__(self, points):
        self.points, self.output = points, ipywidgets.Output()
    def show(self):
        display(self.output)
        self.draw()
    def draw(self):
        with self.output:
            self.output.clear_output(wait=True)
            display(figure(self.points, "live"), raw=True)
    def finish(self, i):
        self.output.clear_output()
        display(figure(self.points, "final"), raw=True)
        print(f"cell {i}: done")
'''
SEGKIT_CELL = ("curves = Live(2000)\ncurves.show()\nfor _ in range(3):\n    time.sleep(0.02)\n    curves.draw()\n"
               "curves.finish({i})")
WIDE_CELL = "curves = Live(50000)\ncurves.show()\ncurves.draw()"

STATS = {"cells": 0, "late": 0, "hangs": 0, "slowest_reply_after_idle_s": 0.0, "recovered_by_polling": 0,
         "largest_recovery_delay_s": 0.0}
ARGS: argparse.Namespace


class Measured:
    """Times each cell's reply against the kernel's 'idle' around a client's own wait for it."""

    async def _async_poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive):
        idle_at = {}
        task_poll_output_msg.add_done_callback(lambda _: idle_at.setdefault("t", time.monotonic()))
        watchdog = asyncio.ensure_future(self._hang_watchdog(task_poll_output_msg, idle_at))
        STATS["cells"] += 1
        channel = self.kc.shell_channel
        lost_wakeup = self._watch_for_lost_wakeups(channel)
        try:
            reply = await super()._async_poll_for_reply(msg_id, cell, timeout, task_poll_output_msg,
                                                        task_poll_kernel_alive)
        except KernelStalled:
            STATS["hangs"] += 1  # segkit's watchdog fired
            raise
        finally:
            watchdog.cancel()
            vars(channel).pop("get_msg", None)
        lag = max(0.0, time.monotonic() - idle_at.get("t", time.monotonic()))
        STATS["late"] += lag > ARGS.late
        STATS["slowest_reply_after_idle_s"] = round(max(STATS["slowest_reply_after_idle_s"], lag), 3)
        if lost_wakeup["seen"]:
            STATS["recovered_by_polling"] += 1
            STATS["largest_recovery_delay_s"] = round(max(STATS["largest_recovery_delay_s"], lag), 3)
        return reply

    @staticmethod
    def _watch_for_lost_wakeups(channel) -> dict[str, bool]:
        """Notes the lost wakeup of jupyter/nbclient#312 on the shell channel, which segkit's client survives
        by waiting in slices: a wait that ends empty-handed while a message sits in the socket, or one that
        returns its message only when its slice runs out (a wakeup that came would have returned it at once)."""
        original, seen = channel.get_msg, {"seen": False}

        async def get_msg(*args, **kwargs):
            timeout, began = kwargs.get("timeout"), time.monotonic()
            try:
                message = await ensure_async(original(*args, **kwargs))
            except Empty:
                seen["seen"] |= bool(channel.socket.get(zmq.EVENTS) & zmq.POLLIN)
                raise
            if timeout and time.monotonic() - began >= 0.95 * timeout:
                seen["seen"] = True
            return message

        channel.get_msg = get_msg
        return seen

    async def _hang_watchdog(self, task_poll_output_msg, idle_at):
        if not isinstance(self, PapermillMeasured):
            return
        while "t" not in idle_at or time.monotonic() - idle_at["t"] < ARGS.hang_after:
            await asyncio.sleep(0.5)
        STATS["hangs"] += 1
        socket = self.kc.shell_channel.socket
        print(f"HANG: no reply {ARGS.hang_after:g} s after 'idle'; reply pending in the client's socket: "
              f"{bool(socket.get(zmq.EVENTS) & zmq.POLLIN)}; re-checking the socket to go on", flush=True)
        socket._handle_events()


class SegkitMeasured(Measured, WatchfulClient):
    pass


class PapermillMeasured(Measured, PapermillNotebookClient):
    pass


class MeasuredSegkitEngine(WatchfulEngine):
    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
        kwargs = remove_args(["input_path", "timeout", "startup_timeout", "execution_timeout", "start_timeout"],
                             **kwargs)
        settings = merge_kwargs(kwargs, kernel_name=kernel_name, log=logger)
        return SegkitMeasured(nb_man, Watchdogs(), **settings).execute()


class MeasuredPapermillEngine(NBClientEngine):
    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
        kwargs = remove_args(["input_path", "timeout", "startup_timeout", "execution_timeout", "start_timeout"],
                             **kwargs)
        settings = merge_kwargs(kwargs, kernel_name=kernel_name, log=logger)
        return PapermillMeasured(nb_man, **settings).execute()


papermill_engines.register("measured-segkit", MeasuredSegkitEngine)
papermill_engines.register("measured-papermill", MeasuredPapermillEngine)


def make_notebook(path: Path, segkit_cells: int, wide_cells: int) -> None:
    sources = [SEGKIT_CELL.format(i=i) for i in range(segkit_cells)] + [WIDE_CELL] * wide_cells
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in [SETUP, *sources]])
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(book, path)


def main() -> int:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--client", choices=["segkit", "papermill"], default="segkit")
    parser.add_argument("--notebooks", type=int, default=40, help="notebooks run one after another (a kernel each)")
    parser.add_argument("--segkit-cells", type=int, default=48, help="cells of the segkit pattern per notebook")
    parser.add_argument("--wide-cells", type=int, default=2, help="cells of the wide pattern per notebook")
    parser.add_argument("--load", type=int, default=2, help="CPU-burning processes meanwhile")
    parser.add_argument("--late", type=float, default=2.0, help="a reply this long after 'idle' is late (s)")
    parser.add_argument("--hang-after", type=float, default=15.0, help="papermill client: a hang after this (s)")
    ARGS = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="segkit-stress-"))
    source = work / "stress.ipynb"
    make_notebook(source, ARGS.segkit_cells, ARGS.wide_cells)
    print(f"client {ARGS.client}, {ARGS.notebooks} notebooks x ({ARGS.segkit_cells} segkit + {ARGS.wide_cells} "
          f"wide) cells, load {ARGS.load}", flush=True)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(ARGS.load)]
    began = time.monotonic()
    failures, loads = 0, []
    try:
        with current_python_kernel() as kernel:
            for index in range(1, ARGS.notebooks + 1):
                try:
                    papermill.execute_notebook(source, work / f"out-{index}.ipynb", kernel_name=kernel,
                                               engine_name=f"measured-{ARGS.client}", progress_bar=False)
                    outcome = "ok"
                except Exception as error:  # a watchdog or a client error: counted, and the run goes on
                    failures += 1
                    outcome = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                loads.append(os.getloadavg()[0])
                print(f"notebook {index}: {outcome}; {json.dumps(STATS)}; load average {loads[-1]:.1f}; "
                      f"{time.monotonic() - began:.0f} s", flush=True)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    print(f"summary: client {ARGS.client}, load {ARGS.load}: {STATS['cells']} cells, {STATS['hangs']} hangs, "
          f"{STATS['late']} late (reply > {ARGS.late:g} s after idle), slowest reply after idle "
          f"{STATS['slowest_reply_after_idle_s']:.2f} s, {STATS['recovered_by_polling']} replies recovered by "
          f"polling (the largest {STATS['largest_recovery_delay_s']:.2f} s after idle), {failures} failed "
          f"notebooks, load average {min(loads, default=0):.1f}-{max(loads, default=0):.1f}, "
          f"{time.monotonic() - began:.0f} s")
    return 1 if STATS["hangs"] or STATS["late"] or failures else 0


if __name__ == "__main__":
    sys.exit(main())

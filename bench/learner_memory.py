"""The memory one learner needs: the five notebooks run in order, as a learner runs them, each in its own kernel.

    .venv/bin/python bench/learner_memory.py                  # cpu profile: as long as the main job, or longer
    .venv/bin/python bench/learner_memory.py --profile tiny   # seconds a notebook: a check that it works

It takes about as long as the main job (``segkit notebooks``: 11 to 22 minutes on the README's two hosts),
longer on a loaded machine.

The notebooks run from a fresh save folder and a fresh ``$SEGKIT_DATA``, so that every notebook trains and
00 pretrains the laptop backbone, as on a learner's first run (Binder's case; a hub whose cache was filled
the day before skips the pretraining). Each notebook's code cells run in order in a kernel of its own,
started by jupyter_client, with the parameters set in a cell right after the parameters cell (as papermill
does); the last cell is the notebooks' ``notebooks.release_memory(globals())``, whose line is printed. The
notebooks and segkit are copied at the start, so that edits made while it runs do not change what is
measured. Every kernel stays alive, as JupyterLab keeps one until it is shut down.

What is counted. Every 2 seconds the sampler reads /proc/PID/smaps of every live kernel and its children:
anonymous memory (the heap, tensors) is each process's own; a page of a file (a library, PyTorch's above
all) is one page however many kernels map it, as a container's memory limit counts it. So a set of
kernels holds the sum of their anonymous memory plus, for each file mapping, the most that any of them has
resident. Other processes on the machine (this script, other users' jobs) are not in the sum, unlike in
PSS; nor is the page cache of the files the kernels read and write, which a memory limit counts too but
can reclaim. A kernel's memory does not depend on which other kernels are alive, so the three ways a learner can
treat a finished notebook's kernel are read from the same samples, each summed over the kernels it keeps:
    kept open: every kernel stays alive (what JupyterLab does unless told otherwise);
    one ahead: the notebook before stays open while this one runs, then is shut down (two kernels);
    shut down: each kernel is shut down after its last cell (one kernel at a time).
At the end, an idle JupyterLab server's resident memory, with no kernel: the rest of a learner's server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_client import KernelManager
from measure import host_line

from segkit.teaching.headless import current_python_kernel
from segkit.teaching.notebooks import NOTEBOOKS, RESULTS_NOTEBOOK

REPO = Path(__file__).resolve().parents[1]
ALL = [*NOTEBOOKS, RESULTS_NOTEBOOK]
GIB = 2**30
SAMPLE_SECONDS = 2.0
CELL_TIMEOUT = 7200.0  # s: the longest a cell may run (hot trains for 10 minutes on a slow, idle 2-core host)
SERVER_TIMEOUT = 120.0  # s: the longest a kernel or JupyterLab may take to answer
WAYS = {"kept open": None, "one ahead": 2, "shut down": 1}  # way -> the newest kernels it keeps (None: all)


# --- reading /proc -------------------------------------------------------------------------------

def process_tree(root: int) -> list[int]:
    """``root`` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parent = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state
                children.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending += children.get(pid, [])
    return tree


@dataclass
class Footprint:
    """What a process tree holds: its own anonymous memory, and its resident pages of each file mapping."""

    anonymous: int = 0  # bytes
    files: dict[tuple[str, str, str, int], int] = field(default_factory=dict)  # (device, inode, offset, size) -> bytes


def footprint(root: int) -> Footprint:
    """The footprint of a process and its children, from their /proc/PID/smaps."""
    found = Footprint()
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            key = None
            for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
                fields = line.split()
                if "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):  # a mapping's header
                    start, end = (int(address, 16) for address in fields[0].split("-"))
                    key = (fields[3], fields[4], fields[2], end - start) if fields[4] != "0" else None
                    rss = 0
                elif fields[0] == "Rss:":
                    rss = int(fields[1]) * 1024
                elif fields[0] == "Anonymous:":
                    anonymous = int(fields[1]) * 1024
                    found.anonymous += anonymous if key else rss  # an anonymous mapping is all its own
                    if key:
                        found.files[key] = max(found.files.get(key, 0), rss - anonymous)
    return found


def together(prints: list[Footprint]) -> int:
    """Bytes a set of process trees holds together: their anonymous memory, and each file page once."""
    files: dict[tuple, int] = {}
    for each in prints:
        for key, size in each.files.items():
            files[key] = max(files.get(key, 0), size)
    return sum(each.anonymous for each in prints) + sum(files.values())


def peak_rss(root: int) -> int:
    """The largest resident set each process of the tree reached (``VmHWM``), summed: exact, not sampled."""
    total = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) * 1024
    return total


# --- the sampler -----------------------------------------------------------------------------------

@dataclass
class Sampler:
    """Reads the live kernels every 2 seconds, in a thread of its own, and keeps each way's peak."""

    kernels: dict[str, int] = field(default_factory=dict)  # notebook -> its kernel's pid, in the order started
    peaks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WAYS, 0))  # way -> bytes
    notebook_peak: dict[str, int] = field(default_factory=dict)  # notebook -> its kernel's largest footprint
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> dict[str, int]:
        """Read every live kernel once; what each way holds now."""
        with self.lock:  # one reader at a time: the thread, or the main loop after a notebook
            prints = {name: footprint(pid) for name, pid in self.kernels.items()}
            now = {way: together(list(prints.values())[-keep:] if keep else list(prints.values()))
                   for way, keep in WAYS.items()}
            for way, held in now.items():
                self.peaks[way] = max(self.peaks[way], held)
            for name, each in prints.items():
                self.notebook_peak[name] = max(self.notebook_peak.get(name, 0), together([each]))
            return now

    def run(self) -> None:
        while not self.stop.wait(SAMPLE_SECONDS):
            self.sample()

    def add(self, name: str, pid: int) -> None:
        with self.lock:
            self.kernels[name] = pid


# --- running one notebook --------------------------------------------------------------------------

def code_cells(path: Path, parameters: dict) -> list[str]:
    """The notebook's code cells in order, with the parameters set right after its parameters cell."""
    cells = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code":
            cells.append(cell.source)
            if "parameters" in cell.metadata.get("tags", []):
                cells.append("\n".join(f"{name} = {value!r}" for name, value in parameters.items()))
    return cells


def start_kernel(env: dict, cwd: Path) -> tuple[KernelManager, object]:
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env=env, cwd=str(cwd))
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=SERVER_TIMEOUT)
    return manager, client


def run_cells(name: str, client, cells: list[str]) -> str:
    """Execute the cells in order; stop at the first error, named with its cell. Returns what the last
    cell printed (the notebook's closing cell: the kernel's memory before and after releasing it)."""
    errors, printed = [], []

    def keep(message: dict) -> None:
        if message["msg_type"] == "error":
            errors.append(f"{message['content']['ename']}: {message['content']['evalue']}")
        elif message["msg_type"] == "stream":
            printed.append(message["content"]["text"])

    for index, source in enumerate(cells):
        printed.clear()
        reply = client.execute_interactive(source, timeout=CELL_TIMEOUT, output_hook=keep, allow_stdin=False)
        if reply["content"]["status"] != "ok":
            raise SystemExit(f"{name}: code cell {index} failed: {errors[-1] if errors else reply['content']}")
    return "".join(printed).strip()


def run_notebooks(notebooks: Path, source: Path, folder: Path, profile: str) -> Sampler:
    """Run the five notebooks in order, every kernel kept alive; print a line per notebook."""
    env = {**os.environ, "SEGKIT_DATA": str(folder / "cache"), "PYTHONPATH": str(source)}
    env.pop("SEGKIT_HEADLESS", None)  # the live curves stream their redraws, as in JupyterLab
    parameters = {"profile": profile, "save_folder": str(folder / "runs")}
    sampler = Sampler()
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    alive = []
    print(f"{'notebook':<12} {'ran':>7} {'kernel peak':>12} {'peak RSS':>9} {'at its end':>11}   "
          f"{'now, kept open / one ahead / shut down':>40}", flush=True)
    try:
        for name in ALL:
            started = time.monotonic()
            manager, client = start_kernel(env, folder)
            alive.append((manager, client))
            pid = manager.provisioner.process.pid
            sampler.add(name, pid)
            closing = run_cells(name, client, code_cells(notebooks / f"{name}.ipynb", parameters))
            seconds = time.monotonic() - started
            now = sampler.sample()
            print(f"{name:<12} {seconds:>6.0f}s {sampler.notebook_peak[name] / GIB:>8.2f} GiB "
                  f"{peak_rss(pid) / GIB:>5.2f} GiB {together([footprint(pid)]) / GIB:>7.2f} GiB   "
                  f"{' / '.join(f'{now[way] / GIB:.2f}' for way in WAYS):>36} GiB", flush=True)
            print(f"{'':<12} its last cell: {closing}", flush=True)
    finally:
        sampler.stop.set()
        thread.join(timeout=30)
        for manager, client in alive:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
    return sampler


# --- an idle JupyterLab server ----------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def lab_server_memory(folder: Path) -> int | None:
    """Bytes a JupyterLab server holds, started and idle, with no kernel; None if it did not start."""
    port = free_port()
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}",
               "--ServerApp.token=", "--ServerApp.password=", f"--ServerApp.root_dir={folder}"]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as server:
        try:
            deadline = time.monotonic() + SERVER_TIMEOUT
            while time.monotonic() < deadline and server.poll() is None:
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2).read()
                    time.sleep(5)  # settled
                    return together([footprint(server.pid)])
                time.sleep(1)
            return None
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", help="the notebooks' profile: cpu (default) or tiny (a check)")
    args = parser.parse_args()
    print(host_line(), flush=True)
    print(f"profile {args.profile}; notebooks {', '.join(ALL)}, in order, each in a kernel of its own", flush=True)
    with tempfile.TemporaryDirectory(prefix="segkit-memory-") as tmp, current_python_kernel():
        tmp = Path(tmp)
        notebooks, source = tmp / "notebooks", tmp / "source"
        shutil.copytree(REPO / "notebooks", notebooks)
        shutil.copytree(REPO / "segkit", source / "segkit", ignore=shutil.ignore_patterns("__pycache__"))
        (tmp / "work").mkdir()
        sampler = run_notebooks(notebooks, source, tmp / "work", args.profile)
        server = lab_server_memory(tmp)
    print("\nthe most the learner's kernels held at once (GiB):", flush=True)
    for way, peak in sampler.peaks.items():
        print(f"  {way}: {peak / GIB:.2f}", flush=True)
    print("  an idle JupyterLab server, no kernel: " + ("did not start" if server is None else f"{server / GIB:.2f}"),
          flush=True)
    print(json.dumps({**{way: round(peak / GIB, 3) for way, peak in sampler.peaks.items()},
                      "jupyterlab": None if server is None else round(server / GIB, 3)}), flush=True)


if __name__ == "__main__":
    main()

"""Processes below this one: finding them (loader workers, a launcher's training processes) and waiting
for a launcher no longer than it lives.

Plain Python and Linux's /proc; elsewhere nothing is found and only the launcher itself is waited for.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: After a launcher ends: how long its processes get to print their last lines.
GRACE_SECONDS = 10.0
#: Then from SIGTERM to SIGKILL: time to record the run as interrupted, as Composer's launcher allows (30 s);
#: a process blocked in a collective handles its SIGTERM only once the collective notices the lost peer.
TERM_GRACE_SECONDS = 30.0

_STATES = {"R": "running", "S": "sleeping", "D": "disk sleep", "T": "stopped", "t": "tracing stop",
           "Z": "zombie", "X": "dead", "I": "idle"}


@dataclass(frozen=True)
class ProcessEntry:
    parent: int
    state: str  # running, sleeping, stopped, ...
    started: int  # clock ticks after boot: a pid used again by a new process has another


def descendants(root: int | None = None) -> dict[int, ProcessEntry]:
    """Every process below ``root`` (default: this one), nearest first.

    Example:
        >>> child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
        >>> child.pid in descendants() or not Path("/proc").is_dir()
        True
        >>> child.kill(); child.wait()
        -9
    """
    entries = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (command)", which may hold spaces
            entries[int(stat.parent.name)] = ProcessEntry(int(fields[1]), _STATES.get(fields[0], fields[0]),
                                                          int(fields[19]))
        except (OSError, IndexError, ValueError):
            continue  # ended while read
    below: dict[int, ProcessEntry] = {}
    frontier = {os.getpid() if root is None else root}
    while frontier:
        found = {pid: entry for pid, entry in entries.items() if entry.parent in frontier and pid not in below}
        below.update(found)
        frontier = set(found)
    return below


def run_launcher(command: Sequence[str], on_line: Callable[[str], None] | None = None) -> int:
    """Run a launcher (Composer's) and wait for it no longer than it lives; returns its exit status.

    The launcher watches its training processes: one that dies ends the others, and one that is stopped
    or cut off makes the others fail within the collective timeout (``SEGKIT_DIST_TIMEOUT``). What the
    launcher cannot watch is itself: killed, it leaves its processes training (and holding the output
    pipe, so reading it would wait for them). The processes below the launcher are noted while it runs;
    once it has ended they get ``GRACE_SECONDS`` to print their last lines, then SIGTERM (a run marks
    itself interrupted) and, ``TERM_GRACE_SECONDS`` later, SIGKILL. An interrupt (Ctrl-C, a notebook's stop,
    SIGTERM to this process) ends them the same way before it is raised.

    ``on_line``: called with each line the processes print (None: they print to this stdout).
    """
    process = subprocess.Popen(command, text=True, bufsize=1, stdout=subprocess.PIPE if on_line else None,
                               stderr=subprocess.STDOUT if on_line else None)
    lines: queue.Queue[str | None] = queue.Queue()
    if on_line:
        threading.Thread(target=_copy_lines, args=(process.stdout, lines), daemon=True).start()

    def forward_lines(seconds: float) -> bool:  # False once the pipe has closed
        try:
            line = lines.get(timeout=seconds)
            while line is not None:
                on_line(line)
                line = lines.get_nowait()
            return False
        except queue.Empty:
            return True

    takes_sigterm = (threading.current_thread() is threading.main_thread()
                     and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
    if takes_sigterm:  # a scheduler's SIGTERM to this process alone: end the launcher's processes on the way out
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    members: dict[int, ProcessEntry] = {}
    try:
        while process.poll() is None:
            members.update(descendants(process.pid))
            forward_lines(0.5) if on_line else time.sleep(0.5)
        deadline = time.monotonic() + GRACE_SECONDS
        while on_line and forward_lines(0.2) and time.monotonic() < deadline:
            pass  # the last lines of processes that outlive the launcher
    finally:
        if process.poll() is None:
            process.terminate()
        members.update(descendants(process.pid))
        _end(members)
        process.wait()
        if takes_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return process.returncode


def _copy_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _end(members: dict[int, ProcessEntry]) -> None:
    """SIGTERM to each of ``members`` still alive (the same pid and start), SIGKILL to those left after
    ``TERM_GRACE_SECONDS``."""
    deadline = time.monotonic() + TERM_GRACE_SECONDS
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = _alive(members)
        while sig == signal.SIGKILL and alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = _alive(members)
        for pid in alive:
            try:
                os.kill(pid, sig)
                if sig == signal.SIGTERM:
                    os.kill(pid, signal.SIGCONT)  # a stopped process takes its SIGTERM once continued
            except ProcessLookupError:
                pass


def _alive(members: dict[int, ProcessEntry]) -> list[int]:
    alive = []
    for pid, entry in members.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[19]) == entry.started and fields[0] not in ("Z", "X"):
            alive.append(pid)
    return alive

"""The core path of a session, measured: how long notebooks 00-04 take a learner to read, check and run.

    .venv/bin/python bench/core_path.py                 # 200 words a minute, 2 minutes a self-check
    .venv/bin/python bench/core_path.py --rate 238      # another reading rate

Reading. The words of the markdown cells tagged ``core`` (a cell tagged ``deep-dive`` is skipped in a
session), as a learner sees them: a link's address, an image, an HTML tag and a hint folded in
``<details>`` are not read in passing (a hint is opened when a check says ✗: its time is the check's).
Comments in the core code cells are read too, except in the parameters cell, which a session leaves as
it is. Looking at figures and tables is not counted. The cells tagged ``exercise`` (the recipe lab and
the open exercises) are counted apart: a 90-minute session does them, a 60-minute one leaves them.
Rate: 200 words a minute, below the 238 that Brysbaert (2019) found as the mean silent reading rate of
adults for English non-fiction (most read it at 175-300), because the notebooks are technical text with
formulas and code, read by many in a second language, which he finds slower; 150 and 238 are printed as
the range.

Self-checks. A code cell that calls ``notebooks.check(``; 2 minutes each (an estimate, not measured: read
the question, type one line, run it, open the hint once).

Running. Each notebook's wall time under papermill on the slower of the README's two 2-core machines,
read from the README ("On a second machine of the class ..."), 00 with pretraining the laptop backbone.
A learner runs all cells first (Run All) and reads while they run: the core prose before the training
cell is read while the notebook trains, the rest after it. So a notebook takes
max(reading before training, run time) + reading after training + self-checks (04 trains nothing: all
its reading counts after its run). Two ways to go from one notebook to the next:
    one kernel at a time: the next notebook is opened, and run, once this one's kernel is shut down;
    one notebook ahead: as soon as this notebook's run has ended, the next one is opened and run (Run
        All) while the learner finishes this one; at most two kernels are open. Its run then overlaps
        the reading and the checks of this one (the two kernels' competing for the cores is not counted:
        the finished one is idle but for the check cells).
A third line gives the tiny profile, one kernel at a time, with its runs (seconds) counted as none. After
a block of the session's own (the 90-minute session's jigsaw), the next notebook is opened and run then.

M. Brysbaert, How many words do we read per minute? A review and meta-analysis of reading rate,
Journal of Memory and Language 109 (2019) 104047.
"""

from __future__ import annotations

import argparse
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

import nbformat

from segkit.teaching.notebooks import NOTEBOOKS, NOTEBOOKS_DIR, RESULTS_NOTEBOOK

REPO = Path(__file__).resolve().parents[1]
ALL = [*NOTEBOOKS, RESULTS_NOTEBOOK]
RATE = 200  # words a minute: the rate the schedule is planned at (see above)
RATES = (150, 200, 238)  # a slow reader, the planned rate, Brysbaert's mean for non-fiction
CHECK_MINUTES = 2.0  # a self-check: an estimate, not measured


@dataclass(frozen=True)
class Session:
    minutes: int  # the session's length
    parts: tuple[str | tuple[str, float], ...]  # notebooks, and blocks of fixed minutes, in order
    exercises: bool  # whether the learners do the exercises (the cells tagged exercise)


#: The sessions of docs/workshop.md. The 90-minute one adds the jigsaw, in which each group trains its
#: exercises in the lab (their runs are budgeted in the guide), and the pooling of the groups' results.
SESSIONS = (Session(60, tuple(ALL), exercises=False),
            Session(90, (*NOTEBOOKS, ("jigsaw", 20.0), ("pooling", 7.0), RESULTS_NOTEBOOK), exercises=True))


@dataclass(frozen=True)
class Notebook:
    name: str
    before: int  # core words before the training cell (read while it trains)
    after: int  # core words after it, the exercises' left out
    exercise: int  # words of the cells tagged exercise
    deep: int  # words of the deep-dive cells
    checks: int  # self-check cells
    run_minutes: float  # the notebook's wall time on the slower host


def timeline(session: Session, books: dict[str, Notebook], rate: float, check_minutes: float,
             ahead: bool, runs: bool = True) -> list[tuple[str, float, float, float]]:
    """When the learner enters each part of the session, starts its self-checks and leaves it:
    ``(part, start, checks, end)`` in minutes.

    A notebook is left at max(reading before training, its run's end) + reading after + self-checks.
    ``ahead``: a notebook's run starts as soon as the learner is in the notebook before and that one's
    run has ended (one notebook ahead); else, and after a block, when the learner opens it.
    ``runs``: False counts every run as none (the tiny profile's runs take seconds).
    """
    parts, now, started = [], 0.0, 0.0  # the learner enters a part at ``now``; the next run started at ``started``
    for part in session.parts:
        if isinstance(part, tuple):  # a block of the session's own (the jigsaw, the pooling): the notebook
            parts.append((part[0], now, now + part[1], now + part[1]))  # after it is opened after it
            now = started = now + part[1]
            continue
        book = books[part]
        started = started if ahead else now
        run_ends = started + (book.run_minutes if runs else 0.0)
        after = book.after + (book.exercise if session.exercises else 0)
        checks = max(now + book.before / rate, run_ends) + after / rate
        leave = checks + book.checks * check_minutes
        parts.append((part, now, checks, leave))
        now, started = leave, max(now, run_ends)
    return parts


def read_words(markdown: str) -> int:
    """Words a learner reads in passing in a markdown cell."""
    text = re.sub(r"<details>.*?</details>", " ", markdown, flags=re.DOTALL)  # a folded hint
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", " ", text)  # an image (the Colab badge)
    text = re.sub(r"\]\([^)]*\)", "]", text)  # a link's address
    text = re.sub(r"<[^>]+>", " ", text)  # HTML tags and bare <https://...> addresses
    return sum(1 for word in text.split() if re.search(r"\w", word))


def comment_words(code: str) -> int:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):
        return 0
    return sum(read_words(token.string.lstrip("#")) for token in tokens if token.type == tokenize.COMMENT)


def measure(name: str, run_minutes: float) -> Notebook:
    book = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    counts = {"before": 0, "after": 0, "exercise": 0, "deep": 0}
    checks, trained = 0, name == RESULTS_NOTEBOOK  # 04 trains nothing: all its reading follows its run
    for cell in book.cells:
        tags = cell.metadata.get("tags", [])
        if ("core" in tags) == ("deep-dive" in tags):
            raise SystemExit(f"{name}: a cell is tagged neither core nor deep-dive, or both: {cell.source[:80]!r}")
        if cell.cell_type == "markdown":
            words = read_words(cell.source)
        else:
            words = 0 if "parameters" in tags else comment_words(cell.source)
            checks += "deep-dive" not in tags and "notebooks.check(" in cell.source
        part = ("deep" if "deep-dive" in tags else "exercise" if "exercise" in tags
                else "after" if trained else "before")
        counts[part] += words
        trained = trained or (cell.cell_type == "code" and "job.train(" in cell.source)
    return Notebook(name, counts["before"], counts["after"], counts["exercise"], counts["deep"], checks, run_minutes)


def slower_host_minutes() -> dict[str, float]:
    """The notebooks' wall times on the README's second machine, in minutes, in its table's order."""
    readme = (REPO / "README.md").read_text()
    sentence = re.search(r"On a second machine of the class .*?in the\s+table's order", readme, re.DOTALL)
    if sentence is None:
        raise SystemExit("README.md no longer has the second machine's times ('On a second machine of the class')")
    seconds = [float(value) for value in re.findall(r"(\d+\.\d) s\b", sentence.group())]
    order = re.findall(r"^\| `(\d\d_\w+)` \|", readme, re.MULTILINE)
    if sorted(order) != sorted(ALL) or len(seconds) != len(order):
        raise SystemExit(f"README.md: {len(seconds)} times for the notebooks {order}")
    return {name: value / 60 for name, value in zip(order, seconds, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=RATE, help=f"words a minute (default {RATE})")
    parser.add_argument("--check-minutes", type=float, default=CHECK_MINUTES,
                        help=f"minutes a self-check takes (default {CHECK_MINUTES:g})")
    args = parser.parse_args()
    runs = slower_host_minutes()
    books = {name: measure(name, runs[name]) for name in ALL}
    rate, check = args.rate, args.check_minutes
    print(f"reading at {rate:g} words a minute; {check:g} minutes a self-check; run times of the slower host "
          f"(README, second machine)")
    print("| notebook | core words (before training + after) | reading | exercise words | deep-dive words "
          "| self-checks | run (slower host) | waiting for the run | alone on the core path |")
    print("|---|---|---|---|---|---|---|---|---|")
    alone = {name: timeline(Session(0, (name,), False), books, rate, check, ahead=False)[0][-1] for name in books}
    for book in books.values():
        reading = (book.before + book.after) / rate
        waiting = max(0.0, book.run_minutes - book.before / rate)
        print(f"| `{book.name}` | {book.before + book.after} ({book.before} + {book.after}) | {reading:.1f} min "
              f"| {book.exercise} | {book.deep} | {book.checks} ({book.checks * check:g} min) "
              f"| {book.run_minutes:.1f} min | {waiting:.1f} min | {alone[book.name]:.1f} min |")
    core = sum(b.before + b.after for b in books.values())
    print(f"| all | {core} | {core / rate:.1f} min | {sum(b.exercise for b in books.values())} | "
          f"{sum(b.deep for b in books.values())} | {sum(b.checks for b in books.values())} | "
          f"{sum(b.run_minutes for b in books.values()):.1f} min | | {sum(alone.values()):.1f} min |")
    for session in SESSIONS:
        blocks = [part for part in session.parts if isinstance(part, tuple)]
        print(f"\n{session.minutes}-minute session: the core path of 00-04 "
              f"{'with' if session.exercises else 'without'} the exercises, every self-check"
              + "".join(f", {name} ({minutes:g} min)" for name, minutes in blocks))
        ways = (("one kernel at a time", False, True), ("one notebook ahead (two kernels)", True, True),
                ("tiny profile, one kernel at a time (runs counted as none)", False, False))
        for how, ahead, runs in ways:
            parts = timeline(session, books, rate, check, ahead, runs)
            totals = {r: timeline(session, books, r, check, ahead, runs)[-1][-1] for r in sorted({*RATES, rate})}
            verdict = "fits" if totals[rate] <= session.minutes else "does not fit"
            print(f"  {how}: {totals[rate]:.1f} min at {rate:g} words a minute, {verdict} "
                  f"({', '.join(f'{total:.1f} at {r:g}' for r, total in totals.items() if r != rate)}); "
                  + ", ".join(f"{name} {start:.0f}-{end:.0f}" + (f" (checks {checks:.0f}-{end:.0f})"
                                                                  if end > checks else "")
                              for name, start, checks, end in parts))

if __name__ == "__main__":
    main()

"""Run one command several times in a row, with CPU burners beside it: how often it passes, fails or hangs.

A run that has not ended after ``--limit`` seconds is a hang: it is killed (its whole process group)
and counted. Used for docs/reliability.md's figures:

    .venv/bin/python bench/repeat_under_load.py --times 10 --load 2 -- \
        .venv/bin/pytest -q tests/system/test_notebooks.py -k "main_job or keeps_its_curves or compares_the_four"
    .venv/bin/python bench/repeat_under_load.py --times 5 --load 0 -- .venv/bin/pytest -q
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=5, help="runs, one after another")
    parser.add_argument("--load", type=int, default=2, help="CPU-burning processes during every run")
    parser.add_argument("--limit", type=float, default=1800, help="seconds after which a run counts as hung")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    outcomes = {"passed": 0, "failed": 0, "hung": 0}
    seconds, loads = [], []
    try:
        for index in range(1, args.times + 1):
            began = time.monotonic()
            run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
            try:
                output, _ = run.communicate(timeout=args.limit)
                outcome = "passed" if run.returncode == 0 else "failed"
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)
                output, _ = run.communicate()
                outcome = "hung"
            outcomes[outcome] += 1
            seconds.append(time.monotonic() - began)
            last = (output or "").strip().splitlines()[-1:] or [""]
            loads.append(os.getloadavg()[0])
            print(f"run {index}: {outcome} in {seconds[-1]:.0f} s (load average {loads[-1]:.1f}): {last[0][:160]}",
                  flush=True)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    print(f"summary: {args.times} runs of `{' '.join(command)}` with {args.load} burners: {outcomes['passed']} passed, "
          f"{outcomes['failed']} failed, {outcomes['hung']} hung; {min(seconds):.0f}-{max(seconds):.0f} s each; load "
          f"average {min(loads):.1f}-{max(loads):.1f} at their ends")
    return 0 if outcomes["passed"] == args.times else 1


if __name__ == "__main__":
    sys.exit(main())

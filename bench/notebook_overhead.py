"""Notebook overhead: each notebook under papermill, its run time and its kernel's peak memory, and
the same training run through ``segkit train`` (the named peer), in one session.

    .venv/bin/python bench/notebook_overhead.py            # all five notebooks, cpu profile (~15 min)
    .venv/bin/python bench/notebook_overhead.py --quick    # tiny profile, 2 batches (~1.5 min)

Each notebook runs in a fresh process that executes it with papermill and reports the largest
resident set of its children: the notebook's kernel (``getrusage(RUSAGE_CHILDREN).ru_maxrss``). The
first notebook runs with an empty ``$SEGKIT_DATA``, so it includes pretraining the laptop backbone,
as on a learner's first run; the others reuse it.

Then ``segkit train`` trains the same recipe, profile and seed in a fresh process (``--compare``,
default mild and medium). Two ratios come out, against the target of at most 1.05x:
    - run: the training run's own wall time (``metrics.json``) in the notebook's kernel over the
      same run's through ``segkit train``: the cost of training in a kernel with live curves;
    - process: the whole notebook (teaching cells, figures, gallery, kernel start) over the whole
      ``segkit train`` process: what a papermill job costs beyond training.
Targets: run at most 1.05x; each kernel under 2 GB (Binder's limit).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import host_line

import segkit.teaching.notebooks

REPO = Path(__file__).resolve().parents[1]
RECIPES = dict(segkit.teaching.notebooks.NOTEBOOKS)  # notebook -> the recipe it trains
NOTEBOOKS = [*RECIPES, segkit.teaching.notebooks.RESULTS_NOTEBOOK]
BINDER_LIMIT_GIB = 2.0

#: Run in a fresh interpreter: execute one notebook, print its seconds and its kernel's peak memory.
CHILD = """
import json, resource, sys, time
import papermill
from segkit.teaching.headless import current_python_kernel
source, output, parameters = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
started = time.monotonic()
with current_python_kernel() as kernel:
    papermill.execute_notebook(source, output, parameters=parameters, kernel_name=kernel, progress_bar=False)
seconds = time.monotonic() - started
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child: the kernel
print(json.dumps({"seconds": seconds, "kernel_peak_gib": peak_kib / 2**20}))
"""


def run_notebook(name: str, out: Path, parameters: dict, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(REPO / "notebooks" / f"{name}.ipynb"),
                           str(out / f"{name}.ipynb"), json.dumps(parameters)],
                          capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_cli(recipe: str, profile: str, duration: str | None, save_folder: Path, env: dict) -> float:
    command = [sys.executable, "-m", "segkit", "train", "--recipe", recipe, "--profile", profile,
               "--save-folder", str(save_folder), "--run-name", f"{recipe}-cli"]
    if duration:
        command += ["--duration", duration]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"segkit train --recipe {recipe} failed:\n{done.stderr[-3000:]}")
    return time.monotonic() - started


def run_wall_time(folder: Path) -> float:
    return json.loads((folder / "metrics.json").read_text())["history"][-1]["wall_time"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny profile, 2 batches: a smoke run")
    parser.add_argument("--compare", nargs="*", default=["01_mild", "02_medium"],
                        help="notebooks whose run is also trained with segkit train")
    args = parser.parse_args()
    profile, duration = ("tiny", "2ba") if args.quick else ("cpu", None)
    print(host_line(), flush=True)
    with tempfile.TemporaryDirectory(prefix="segkit-bench-") as folder:
        out, cache = Path(folder) / "out", Path(folder) / "cache"
        out.mkdir()
        env = {**os.environ, "SEGKIT_DATA": str(cache),
               "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
        parameters = {"profile": profile, "save_folder": str(out / "runs")}
        if duration:
            parameters["duration"] = duration
        measured = {}
        print(f"{'notebook':<12} {'wall time':>10} {'kernel peak':>12}", flush=True)
        for name in NOTEBOOKS:
            measured[name] = run_notebook(name, out, parameters, env)
            peak = measured[name]["kernel_peak_gib"]
            print(f"{name:<12} {measured[name]['seconds']:>9.1f}s {peak:>10.2f} GiB"
                  f"{'' if peak < BINDER_LIMIT_GIB else '  over 2 GB'}", flush=True)
        total = sum(entry["seconds"] for entry in measured.values())
        print(f"all notebooks: {total:.0f} s; largest kernel {max(e['kernel_peak_gib'] for e in measured.values()):.2f}"
              f" GiB (target under {BINDER_LIMIT_GIB:g})", flush=True)
        print("\nsegkit train of the same run (the peer), in a fresh process:")
        for name in args.compare:
            recipe = RECIPES[name]
            process = run_cli(recipe, profile, duration, out / "runs", env)
            suffix = f"-{duration}" if duration else ""
            in_notebook = run_wall_time(out / "runs" / f"{recipe}-{profile}-seed17{suffix}")
            through_cli = run_wall_time(out / "runs" / f"{recipe}-cli")
            print(f"{name}: run {in_notebook:.1f} s in the notebook's kernel against {through_cli:.1f} s through "
                  f"segkit train: {in_notebook / through_cli:.3f}x (target at most 1.05x); whole notebook "
                  f"{measured[name]['seconds']:.1f} s against the whole segkit train process {process:.1f} s: "
                  f"{measured[name]['seconds'] / process:.2f}x", flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# The GPU check on the lent GPU machine (Python 3.12 and torch 2.11, no Composer, no Jupyter, no network),
# from the repository root. It must carry the wheel bundle, built here beforehand where PyPI is reachable:
#
#   .venv/bin/python bench/gpu_bundle.py                                                   # here: bench/wheels/
#   run(command="bash bench/gpu_check.sh --call 1", carry=["bench/wheels"], timeout_s=480)  # the device tool,
#   run(command="bash bench/gpu_check.sh --call 2", carry=["bench/wheels"], timeout_s=480)  # then at once this
#   bash bench/gpu_check.sh --parts evaluate,notebook    # a subset (gpu_check.py --help lists the parts)
#   bash bench/gpu_check.sh --cpu                        # the CPU mode, with this checkout's .venv, no bundle
#
# It checks the bundle first (one line and exit 2 when bench/wheels is missing or incomplete), installs
# it beside the machine's torch, then runs bench/gpu_check.py. Everything it prints also goes to
# $OUT/gpu_check.log, and the check rewrites $OUT/gpu_check.json after every part, so a run killed at
# its time limit still returns what ran (OUT defaults to /tmp/gpu_check). TOTAL_SECONDS bounds each call;
# by the parts' seconds (measured on an H200 where they ran there, else estimated) call 1 takes about
# 6.8 minutes and call 2 about 6.6. PYTHON picks the interpreter (default python3; with --cpu
# .venv/bin/python where it exists), WHEELS the bundle (default bench/wheels); the other arguments go
# to gpu_check.py.
set -uo pipefail
cd "$(dirname "$0")/.."

TOTAL_SECONDS=450  # within the device tool's 10 minutes a command and a timeout_s of 480
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1

cpu=0
for arg in "$@"; do
    [ "$arg" = "--cpu" ] && cpu=1
done

if command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu_check.sh: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
else
    echo "gpu_check.sh: no nvidia-smi here"
fi

if [ "$cpu" = 1 ]; then
    if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
    PYTHON=${PYTHON:-python3}
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    "$PYTHON" bench/gpu_check.py --json "$OUT/gpu_check.json" "$@"
    exit $?
fi

PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-bench/wheels}
"$PYTHON" bench/gpu_bundle.py check "$WHEELS" || exit 2
site=$(mktemp -d "${TMPDIR:-/tmp}/segkit-site.XXXXXX")
trap 'rm -rf "$site"' EXIT
"$PYTHON" bench/gpu_bundle.py install "$WHEELS" "$site" || { echo "gpu_check.sh: installing $WHEELS failed"; exit 2; }
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" bench/gpu_check.py --budget $((TOTAL_SECONDS - SECONDS)) --json "$OUT/gpu_check.json" "$@"

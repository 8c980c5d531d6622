#!/usr/bin/env bash
# The GPU check on a machine with Python 3.12 and torch but no Composer and no network, from the
# repository root: installs the wheel bundle (bench/gpu_bundle.py, built beforehand where PyPI is
# reachable) next to the machine's torch, then runs bench/gpu_check.py within 8 minutes in all.
#
#   bash bench/gpu_check.sh            # all output on stdout; results in $OUT/gpu_check.json if OUT is set
#
# PYTHON (default python3) picks the interpreter, WHEELS (default bench/wheels) the bundle; other
# arguments go to gpu_check.py.
set -euo pipefail
exec 2>&1
cd "$(dirname "$0")/.."

# 480 s in all, less a margin for starting and ending; the check gets what the install leaves.
TOTAL_SECONDS=450
PYTHON=${PYTHON:-python3}
site=$(mktemp -d "${TMPDIR:-/tmp}/segkit-site.XXXXXX")
trap 'rm -rf "$site"' EXIT

"$PYTHON" bench/gpu_bundle.py install "${WHEELS:-bench/wheels}" "$site"
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"

json=()
if [ -n "${OUT:-}" ]; then
    json=(--json "$OUT/gpu_check.json")
fi
"$PYTHON" bench/gpu_check.py --budget $((TOTAL_SECONDS - SECONDS)) "${json[@]}" "$@"

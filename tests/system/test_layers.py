"""The library installs and trains without the teaching layer's packages (plotly, ipywidgets, papermill,
matplotlib, JupyterLab): a virtualenv holding only what pyproject.toml's ``dependencies`` need, linked from
this one's packages, trains a run from the command line and from Python, and a teaching command there says
in one line what to install."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO, load_bench, pyproject, subprocess_env
from tests.system.conftest import bare_python

#: The teaching extra's packages, and what only they bring: none may be in the library's environment.
TEACHING_ONLY = {"plotly", "ipywidgets", "anywidget", "papermill", "nbconvert", "matplotlib", "ipykernel",
                 "jupyterlab", "nbformat", "ipython"}


def library_closure() -> set[str]:
    """Every distribution the library's dependencies need on this interpreter, transitively, with the extras
    they ask of one another (mosaicml-cli needs gql[websockets]); segkit's own extras left out."""
    roots = tuple(Requirement(line).name for line in pyproject()["project"]["dependencies"])
    return set(load_bench("gpu_bundle").requirement_closure(roots, environment={}))


@pytest.fixture(scope="module")
def library_python(tmp_path_factory) -> Path:
    needed = library_closure()
    assert not needed & TEACHING_ONLY, needed & TEACHING_ONLY  # the library's dependencies bring none of them
    return bare_python(tmp_path_factory.mktemp("library-only") / "venv", needed)


def run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**subprocess_env(), "PYTHONPATH": str(REPO), "PYTHONNOUSERSITE": "1"})


def test_the_library_trains_without_the_teaching_layer(library_python, scenes_root, tmp_path):
    missing = run(library_python, "-c", "import plotly", cwd=tmp_path)
    assert missing.returncode != 0 and "No module named 'plotly'" in missing.stderr
    trained = run(library_python, "-m", "segkit", "train", "--profile", "tiny", "--data", str(scenes_root),
                  "--duration", "2ba", "--save-folder", "runs", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert json.loads((tmp_path / "runs" / "baseline-tiny-seed17-2ba" / "metrics.json").read_text())["status"] == \
        "finished"
    api = ("import segkit, sys; result = segkit.train(segkit.run_spec('mild', 'tiny', sys.argv[1], duration='2ba'), "
           "save_folder='runs', print_progress=False); print(round(segkit.evaluate(result.folder)['miou'], 4), "
           "round(result.miou, 4)); print(sorted(m for m in sys.modules if m.split('.')[0] in "
           f"{sorted(TEACHING_ONLY)!r} or m.startswith('segkit.teaching')))")
    done = run(library_python, "-c", api, str(scenes_root), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    scores, loaded = done.stdout.splitlines()[-2:]
    assert scores.split()[0] == scores.split()[1] and loaded == "[]"


def test_a_teaching_command_says_in_one_line_what_to_install(library_python, tmp_path):
    done = run(library_python, "-m", "segkit", "notebooks", "--out", "out", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("segkit: error: segkit notebooks needs the teaching layer, and ")
    assert "is not installed; install it with: pip install 'segkit[teaching]'" in done.stderr
    assert not (tmp_path / "out").exists()

"""Shared fixtures: generated data in the exact ADEChallengeData2016 layout (nothing downloaded), and one
trained tiny run.

The tests are laid out like the code: ``library/`` and ``teaching/`` hold unit tests of each layer, and
``system/`` the tests of the whole (browser, hub, Binder, notebooks, several processes, killed runs, Unix
accounts), marked ``system`` here. ``pytest -m "not system"`` runs the unit tests alone, ``pytest -m system``
the rest; ``slow`` and ``gpu`` tests run only when the expression names them (``-m slow``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segkit.processes import descendants
from segkit.runs import RunResult
from segkit.scenes import write_scenes
from segkit.spec import RunSpec, run_spec

REPO = Path(__file__).resolve().parents[1]
SYSTEM_TESTS = REPO / "tests" / "system"


def pytest_collection_modifyitems(config, items) -> None:
    """Mark the tests under tests/system/ as ``system``; leave out ``slow`` and ``gpu`` tests unless the
    ``-m`` expression names them."""
    asked = config.getoption("markexpr") or ""
    kept, left_out = [], []
    for item in items:
        if Path(str(item.fspath)).is_relative_to(SYSTEM_TESTS):
            item.add_marker(pytest.mark.system)
        named = {marker.name for marker in item.iter_markers()}
        (left_out if any(mark in named and mark not in asked for mark in ("slow", "gpu")) else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


@pytest.fixture(autouse=True, scope="session")
def isolated_cache(tmp_path_factory):
    """Built-in datasets go to a per-session cache, never the user's home."""
    os.environ["SEGKIT_DATA"] = str(tmp_path_factory.mktemp("segkit-cache"))
    torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


def write_pair(root: Path, split: str, name: str, image: np.ndarray, labels: np.ndarray,
               image_mode: str | None = None) -> None:
    """Write one image/annotation pair of the ADE layout."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(image)
    if image_mode:
        picture = picture.convert(image_mode)
    suffix = ".png" if image_mode == "RGBA" else ".jpg"
    picture.save(root / "images" / split / f"{name}{suffix}")
    Image.fromarray(labels.astype(np.uint8)).save(root / "annotations" / split / f"{name}.png")


@pytest.fixture
def ade_root(tmp_path) -> Path:
    """A small ADE20k-format folder with known labels: 150 classes, no class list (as the real one
    when objectInfo150.txt is left out), a grayscale JPEG among the training images."""
    root = tmp_path / "ADEChallengeData2016"
    rng = np.random.default_rng(0)
    for split, count in (("training", 4), ("validation", 2)):
        prefix = "ADE_train" if split == "training" else "ADE_val"
        for index in range(1, count + 1):
            labels = np.zeros((40, 48), dtype=np.uint8)
            labels[:20] = 1  # top half: ADE class 1 -> training label 0
            labels[20:, :24] = 150  # bottom-left: ADE class 150 -> training label 149
            image = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
            mode = "L" if (split, index) == ("training", 2) else None
            write_pair(root, split, f"{prefix}_{index:08d}", image, labels, mode)
    return root


@pytest.fixture(scope="session")
def scenes_root(tmp_path_factory) -> Path:
    """A small built-in scenes set (the same generator as the CPU profile's, fewer images)."""
    return write_scenes(tmp_path_factory.mktemp("scenes"), train_images=8, val_images=4)


def tiny_run_spec(data: Path) -> RunSpec:
    """The shared tiny run: mild (so model.pt holds EMA weights) for 3 steps on ``data``, 2 evaluations."""
    return run_spec("mild", "tiny", data, duration="3ba")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, scenes_root) -> RunResult:
    """One finished tiny run (``tiny_run_spec``), trained once per session and test process. Read it;
    a test that changes a run folder copies this one first."""
    from segkit.engine import train

    return train(tiny_run_spec(scenes_root), save_folder=tmp_path_factory.mktemp("tiny-run"), print_progress=False)


def skip_or_fail(reason: str) -> None:
    """Skip a test whose tool is missing, except where the tools must be there: when CI asked for every
    tool (``SEGKIT_REQUIRE_TOOLS=1``, set by ``.ci/run`` once it installed them), or on CI (``CI=true``)
    on a machine with apt, which can install them. There a missing tool fails the test."""
    if os.environ.get("SEGKIT_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{reason}; SEGKIT_REQUIRE_TOOLS=1 forbids skipping it")
    if os.environ.get("CI") == "true" and shutil.which("apt-get"):
        pytest.fail(f"{reason}; on CI with apt this must be installed (see .ci/run), not skipped")
    pytest.skip(reason)


def subprocess_env() -> dict[str, str]:
    """The environment of child processes: warnings are errors, and they compute with as many
    threads as this process, so that their results are bit-identical to in-process runs."""
    return {**os.environ, "PYTHONWARNINGS": "error", "OMP_NUM_THREADS": str(torch.get_num_threads())}


def run_segkit(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real ``segkit`` command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "segkit", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=subprocess_env())


def process_tree(root: int) -> dict[int, int]:
    """pid -> parent pid of every process below ``root``, nearest first (Linux /proc)."""
    return {pid: entry.parent for pid, entry in descendants(root).items()}


def load_bench(name: str):
    """A bench/ script as a module (bench/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def pyproject() -> dict:
    """pyproject.toml, read (tomllib from Python 3.11, tomli before: the test extra installs it there)."""
    try:
        import tomllib
    except ModuleNotFoundError:
        import tomli as tomllib
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pyproject_requirements() -> dict:
    """The library's dependencies and the teaching layer's (pyproject.toml): what the notebooks' environments
    need, by name (``packaging`` Requirements)."""
    from packaging.requirements import Requirement

    project = pyproject()["project"]
    lines = [*project["dependencies"], *project["optional-dependencies"]["teaching"]]
    return {Requirement(line).name: Requirement(line) for line in lines}


#: The ``run_spec`` arguments among a test's training options (the rest are ``train``'s).
SPEC_OPTIONS = ("recipe", "profile", "data", "seed", "duration", "weights")


def train_options(options: dict) -> tuple[dict, dict]:
    """A test's options for one run, split into ``run_spec``'s and ``train``'s: ``train(run_spec(**a), **b)``."""
    return ({key: value for key, value in options.items() if key in SPEC_OPTIONS},
            {key: value for key, value in options.items() if key not in SPEC_OPTIONS})

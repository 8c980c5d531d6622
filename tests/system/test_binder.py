"""Binder's image, checked without building it: repo2docker renders the Dockerfile of ``binder/``
(``repo2docker --no-build``, no Docker needed) and the test reads what the image would hold.

The base environment of that image comes from a conda lock file shipped inside repo2docker (the one the
Dockerfile copies to ``/tmp/env/environment.lock``); ``binder/requirements.txt`` is pip-installed on
top of it, and pip leaves a locked package alone when its version satisfies the requirement. So the
JupyterLab, ipywidgets and ipykernel a Binder learner gets are the lock's, unless
``binder/requirements.txt`` pins them otherwise. mybinder.org builds with its own repo2docker release,
which may ship a newer lock than the pinned one here (``pip install -e '.[hub]'``).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import warnings
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.conftest import REPO, pyproject, skip_or_fail

BINDER = REPO / "binder"
#: What the learner's browser and kernel run: the packages the browser test ran, in this venv.
FRONTEND = ("jupyterlab", "jupyterlab_widgets", "ipywidgets", "ipykernel")


@pytest.fixture(scope="module")
def rendering() -> tuple[str, str]:
    """The Dockerfile ``repo2docker --no-build`` prints for this checkout, and its log."""
    if importlib.util.find_spec("repo2docker") is None:
        skip_or_fail("repo2docker is not installed (pip install -e '.[hub]')")
    done = subprocess.run([sys.executable, "-m", "repo2docker", "--no-build", "--user-name", "jovyan",
                           "--user-id", "1000", str(REPO)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def run_lines(dockerfile: str) -> list[str]:
    return [line for line in dockerfile.splitlines() if line.startswith(("RUN ", "USER ", "COPY "))]


def base_environment_lock(dockerfile: str) -> Path:
    """The conda lock file the Dockerfile copies as the image's base environment."""
    with warnings.catch_warnings():  # repo2docker imports python-json-logger's old module name
        warnings.filterwarnings("ignore", "pythonjsonlogger.jsonlogger has been moved", DeprecationWarning)
        from repo2docker.buildpacks.base import BuildPack
        from repo2docker.buildpacks.conda import HERE

    copied = re.search(r"^COPY \S+ build_script_files/(\S+) /tmp/env/environment\.lock$", dockerfile, re.M)
    assert copied, "the Dockerfile does not copy a base environment lock"
    locks = {BuildPack.generate_build_context_filename(str(path))[0].split("/")[-1]: path
             for path in Path(HERE).glob("environment.py-*.lock")}
    return locks[copied.group(1)]


def locked_versions(lock: Path) -> dict[str, str]:
    """Package name -> version in a conda explicit lock (lines ``https://.../NAME-VERSION-BUILD.conda#md5``)."""
    versions = {}
    for line in lock.read_text().splitlines():
        if line.startswith("https://"):
            name, found, build = line.split("#")[0].rsplit("/", 1)[1].rsplit("-", 2)
            versions[name.replace("-", "_")] = found
    return versions


def binder_requirements() -> dict[str, Requirement]:
    lines = (BINDER / "requirements.txt").read_text().splitlines()
    return {Requirement(line).name.replace("-", "_"): Requirement(line)
            for line in (line.strip() for line in lines) if line and not line.startswith(("#", "-"))}


def image_version(name: str, locked: dict[str, str]) -> str:
    """The version pip leaves in the image: the lock's if it satisfies binder/requirements.txt, else the
    requirement's exact pin (anything looser would let pip pick at build time)."""
    requirement = binder_requirements().get(name)
    if requirement is None or Version(locked[name]) in requirement.specifier:
        return locked[name]
    pins = [spec.version for spec in requirement.specifier if spec.operator == "=="]
    assert pins, f"binder/requirements.txt: {requirement} replaces the image's {name} {locked[name]} with whatever " \
                 f"pip finds at build time; pin it with =="
    return pins[0]


def test_the_image_runs_the_python_of_runtime_txt_within_what_segkit_supports(rendering):
    dockerfile, log = rendering
    wanted = (BINDER / "runtime.txt").read_text().strip().removeprefix("python-")
    assert f"Building conda environment for python={wanted}" in log
    python = locked_versions(base_environment_lock(dockerfile))["python"]
    assert python.startswith(f"{wanted}.")
    supported = SpecifierSet(pyproject()["project"]["requires-python"])
    assert Version(python) in supported, (python, supported)


def test_the_image_installs_binder_requirements_with_cpu_torch_before_the_repository(rendering):
    dockerfile, _ = rendering
    steps = run_lines(dockerfile)
    installs = [line for line in steps if "pip install" in line]
    assert installs == ['RUN ${KERNEL_PYTHON_PREFIX}/bin/pip install --no-cache-dir -r "binder/requirements.txt"']
    # Only binder/requirements.txt is copied in before it: the install layer is cached across commits.
    before = steps[:steps.index(installs[0])]
    assert [line for line in before if "src/" in line] == [
        "COPY --chown=1000:1000 src/binder/requirements.txt ${REPO_DIR}/binder/requirements.txt"]
    # Torch and torchvision are the CPU builds: local versions +cpu, found on PyTorch's CPU index only.
    lines = (BINDER / "requirements.txt").read_text().splitlines()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    requirements = binder_requirements()
    for name in ("torch", "torchvision"):
        assert [spec.version.endswith("+cpu") for spec in requirements[name].specifier] == [True], requirements[name]
    assert not [name for name in requirements if name.startswith("nvidia") or "cuda" in name]


def test_post_build_installs_segkit_and_the_builtin_scenes_as_the_learner(rendering):
    dockerfile, _ = rendering
    steps = run_lines(dockerfile)
    # postBuild runs as the learner's user, after the whole repository is in the image.
    post_build = steps.index("RUN ./binder/postBuild")
    assert steps.index("COPY --chown=1000:1000 src/ ${REPO_DIR}/") < post_build
    assert [line for line in steps[:post_build] if line.startswith("USER ")][-1] == "USER ${NB_USER}"
    commands = [line for line in (BINDER / "postBuild").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert commands == [
        "set -euo pipefail",
        "pip install --no-cache-dir --no-deps -e .",  # segkit itself; its dependencies came from requirements.txt
        'python -c "from segkit.scenes import builtin_scenes; builtin_scenes()"',  # the cpu profile's scenes
    ]


def test_the_image_holds_the_jupyterlab_widgets_and_kernel_the_browser_tests_ran(rendering):
    dockerfile, _ = rendering
    locked = locked_versions(base_environment_lock(dockerfile))
    image = {name: image_version(name, locked) for name in FRONTEND}
    tested = {name: version(name) for name in FRONTEND}
    assert image == tested

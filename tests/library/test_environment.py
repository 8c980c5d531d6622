"""pyproject.toml, environment.yml and binder/ describe one environment."""

from __future__ import annotations

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from segkit.profiles import get_profile
from segkit.scenes import DEFAULT_TRAIN_IMAGES, DEFAULT_VAL_IMAGES
from tests.conftest import REPO, pyproject, pyproject_requirements


def test_mosaicml_pins_are_what_it_allows():
    requirements = pyproject_requirements()
    assert str(requirements["mosaicml"].specifier) == "==0.32.1"
    # mosaicml 0.32.1 requires torch>=2.6,<2.7.1 and torchvision>=0.21,<0.22.1 (its setup.py).
    assert Version("2.7.0") in requirements["torch"].specifier
    assert Version("0.22.0") in requirements["torchvision"].specifier


def test_environment_yml_matches_pyproject():
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    listed = {Requirement(line).name: Requirement(line) for line in pip_section if not line.startswith("-")}
    assert "-e .[teaching]" in pip_section  # installs segkit itself, with its teaching layer
    assert {name: str(r.specifier) for name, r in listed.items()} == {
        name: str(r.specifier) for name, r in pyproject_requirements().items()}


def test_binder_matches_pyproject_with_cpu_torch():
    lines = [line.strip() for line in (REPO / "binder" / "requirements.txt").read_text().splitlines()]
    listed = {Requirement(line).name: Requirement(line) for line in lines if line and not line.startswith(("#", "-"))}
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    tested_front_end = front_end_pins()
    for name, requirement in pyproject_requirements().items():
        binder = str(listed[name].specifier)
        if name in ("torch", "torchvision"):  # the same release, CPU build
            assert binder == f"{requirement.specifier}+cpu", name
            assert Version(binder.removeprefix("==")) in requirement.specifier
        elif name in tested_front_end:  # the version the browser tests ran, within segkit's range
            assert binder == tested_front_end[name], name
            assert Version(binder.removeprefix("==")) in requirement.specifier, name
        else:
            assert binder == str(requirement.specifier), name
    assert set(listed) == set(pyproject_requirements()) | set(tested_front_end)
    assert {name: str(listed[name].specifier) for name in tested_front_end} == tested_front_end


def front_end_pins() -> dict[str, str]:
    """The exact pins of the test extra: the front end the browser tests drive."""
    project = pyproject()["project"]
    extra = project["optional-dependencies"]["test"]
    pins = {Requirement(line).name: str(Requirement(line).specifier) for line in extra}
    return {name: pin for name, pin in pins.items() if pin.startswith("==")}


def test_binder_installs_segkit_and_opens_the_first_notebook():
    post_build = (REPO / "binder" / "postBuild").read_text()
    assert post_build.startswith("#!/bin/bash") and "set -e" in post_build
    assert "pip install --no-cache-dir --no-deps -e ." in post_build
    readme = (REPO / "README.md").read_text()
    assert "mybinder.org/v2/gh/" in readme and "urlpath=lab/tree/notebooks/00_baseline.ipynb" in readme
    # postBuild caches the built-in set the CPU profile trains on.
    cpu = get_profile("cpu")
    assert (cpu.scenes_train_images, cpu.scenes_val_images) == (DEFAULT_TRAIN_IMAGES, DEFAULT_VAL_IMAGES)

"""The wheels that bench/gpu_check.sh installs on a GPU machine with Python 3.12 and torch, but no
Composer and no network.

mosaicml 0.32.1 pins torch<2.7.1, so the GPU machine cannot install it with its dependencies next
to its own (newer) torch: the bundle is installed with ``pip --no-deps --no-index``. It holds, at
the versions this checkout's virtualenv runs, every distribution that segkit's training needs
(mosaicml, torchvision, numpy, pillow, pyyaml: ``TRAINING_REQUIREMENTS``) and what they require in
turn, read from the installed packages' metadata for CPython 3.12 on x86-64 Linux; what torch
itself requires is left out, since the machine's torch came with it. Compiled wheels (numpy,
pillow, pyyaml, psutil, torchvision, ...) are only installed where the machine lacks the
package: its own build matches its torch.

    .venv/bin/python bench/gpu_bundle.py                   # download into bench/wheels/ (from PyPI)
    .venv/bin/python bench/gpu_bundle.py --out DIR         # or into DIR
    python3 bench/gpu_bundle.py install WHEELS TARGET      # on the GPU machine (gpu_check.sh does this)

Building prints each wheel and the size of bundle plus repository (``git ls-files``), and fails
if that is over ``SIZE_LIMIT_MB``: both travel to the GPU machine together.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: segkit's requirements (pyproject.toml) that training imports, torch aside. The notebook packages
#: (plotly, anywidget, ipywidgets, ipykernel, papermill) are left out: the GPU check never opens one.
TRAINING_REQUIREMENTS = ("mosaicml", "torchvision", "numpy", "pillow", "pyyaml")
#: The distribution whose requirements the GPU machine already has installed.
PREINSTALLED = "torch"
#: The GPU machine's interpreter and platform, for the requirements' environment markers.
TARGET_ENVIRONMENT = {
    "python_version": "3.12", "python_full_version": "3.12.0", "implementation_name": "cpython",
    "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
    "platform_machine": "x86_64", "os_name": "posix",
}
#: pip's selectors for that interpreter: manylinux wheels for CPython 3.12, or pure-Python ones.
TARGET_WHEEL_TAGS = ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312",
                     "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64"]
#: What may travel to the GPU machine: wheels and repository together.
SIZE_LIMIT_MB = 60
#: torchvision built for the GPU machine's torch 2.11 (torchvision pairs each torch release with its own).
TORCHVISION_FOR_TARGET_TORCH = "0.26.0"
DEFAULT_OUT = REPO / "bench" / "wheels"


def canonical(name: str) -> str:
    """A distribution name as pip compares them: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_closure(roots: tuple[str, ...]) -> dict[str, list]:
    """Every distribution that ``roots`` need on the target, transitively, with the requirements
    naming it: ``{canonical name: [packaging Requirement, ...]}`` (a root's list is empty unless
    another distribution requires it too).

    Raises:
        SystemExit: a needed distribution is not installed here, so its requirements are unknown.
    """
    from packaging.requirements import Requirement

    needed: dict[str, list] = {canonical(root): [] for root in roots}
    queue, seen = [(root, ()) for root in roots], set()
    while queue:
        name, extras = queue.pop()
        if (canonical(name), extras) in seen:
            continue
        seen.add((canonical(name), extras))
        try:
            declared = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            sys.exit(f"{name} is needed on the GPU machine but not installed here; install it in .venv first")
        for text in declared:
            requirement = Requirement(text)
            if requirement.marker and not any(
                    requirement.marker.evaluate({**TARGET_ENVIRONMENT, "extra": extra}) for extra in ("", *extras)):
                continue
            queue.append((requirement.name, tuple(sorted(requirement.extras))))
            needed.setdefault(canonical(requirement.name), []).append(requirement)
    return needed


def bundle_pins() -> dict[str, str]:
    """``{distribution: version}`` of the bundle: the training requirements' closure without torch's
    own, at the versions installed here; torchvision at the build for the target's torch."""
    preinstalled = requirement_closure((PREINSTALLED,))
    pins = {name: importlib.metadata.version(name)
            for name in requirement_closure(TRAINING_REQUIREMENTS) if name not in preinstalled}
    pins["torchvision"] = TORCHVISION_FOR_TARGET_TORCH
    return dict(sorted(pins.items()))


def repository_bytes() -> int:
    """Bytes of the files git tracks (what the GPU machine's copy of the repository holds)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    paths = [REPO / name for name in listed.decode().split("\0") if name]
    return sum(path.stat().st_size for path in paths if path.is_file())


def build(out: Path) -> int:
    """Download the bundle into ``out``; print its wheels and size. Returns the exit status."""
    pins = bundle_pins()
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.whl"):
        stale.unlink()
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", *TARGET_WHEEL_TAGS,
                    "--dest", str(out), "--quiet", *(f"{name}=={version}" for name, version in pins.items())],
                   check=True)
    wheels = sorted(out.glob("*.whl"))
    missing = set(pins) - {wheel_distribution(wheel) for wheel in wheels}
    if missing:
        print(f"no wheel came for {', '.join(sorted(missing))}", file=sys.stderr)
        return 1
    for wheel in wheels:
        print(f"{wheel.stat().st_size / 1e6:7.2f} MB  {wheel.name}")
    bundle, repository = sum(wheel.stat().st_size for wheel in wheels), repository_bytes()
    total_mb = (bundle + repository) / 1e6
    print(f"{len(wheels)} wheels {bundle / 1e6:.1f} MB + repository {repository / 1e6:.1f} MB = {total_mb:.1f} MB "
          f"(limit {SIZE_LIMIT_MB} MB)")
    if total_mb > SIZE_LIMIT_MB:
        print(f"the bundle and the repository exceed {SIZE_LIMIT_MB} MB", file=sys.stderr)
        return 1
    return 0


def wheel_distribution(wheel: Path) -> str:
    """The canonical distribution name of a wheel file (``name-version-...-tags.whl``)."""
    return canonical(wheel.name.split("-")[0])


def is_compiled(wheel: Path) -> bool:
    """A wheel built for one platform (its last tag is not ``any``)."""
    return not wheel.name.endswith("-any.whl")


def wheels_to_install(wheels: list[Path]) -> list[Path]:
    """All pure-Python wheels (their pinned versions are what was tested), and the compiled ones whose
    package this interpreter lacks (its own build goes with its torch). Prints what it keeps."""
    chosen = []
    for wheel in wheels:
        name = wheel_distribution(wheel)
        try:
            present = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            present = None
        if is_compiled(wheel) and present is not None:
            print(f"using the machine's {name} {present} (not {wheel.name})")
        else:
            chosen.append(wheel)
    return chosen


def install(wheels_folder: Path, target: Path) -> int:
    """Install the bundle into ``target`` (for PYTHONPATH) offline, without dependencies."""
    wheels = sorted(wheels_folder.glob("*.whl"))
    if not wheels:
        print(f"no wheels in {wheels_folder}: build them with `.venv/bin/python bench/gpu_bundle.py` "
              f"where PyPI is reachable", file=sys.stderr)
        return 1
    chosen = wheels_to_install(wheels)
    if not chosen:
        return 0
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                           "--disable-pip-version-check", "--upgrade", "--target", str(target),
                           *map(str, chosen)])
    if done.returncode == 0:
        print(f"installed {len(chosen)} of {len(wheels)} wheels into {target}")
    return done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the wheels (default bench/wheels)")
    installing = commands.add_parser("install", help="install a bundle offline into a folder for PYTHONPATH")
    installing.add_argument("wheels", type=Path)
    installing.add_argument("target", type=Path)
    args = parser.parse_args()
    if args.command == "install":
        return install(args.wheels, args.target)
    return build(args.out)


if __name__ == "__main__":
    sys.exit(main())

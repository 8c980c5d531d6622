"""The wheels that bench/gpu_check.sh installs on the GPU machine, which has Python 3.12, torch 2.11
and many packages, but no Composer, no Jupyter and no network.

The bundle is segkit's requirements (pyproject.toml) and what they require in turn, read from the
packages installed in this checkout's virtualenv and evaluated for CPython 3.12 on x86-64 Linux, at
the versions installed here, less what the GPU machine already has (``DEVICE_PACKAGES``, the list of
its image; torch, torchvision 0.26.0 built for its torch, numpy, pillow, pyyaml, matplotlib, ...):
what the machine has is neither carried nor looked into, since its own requirements came with it.
One exception, ``CARRIED_ANYWAY``: a package the machine has at a version the kit cannot use.
mosaicml 0.32.1 pins torch<2.7.1, so the bundle installs with ``pip --no-deps --no-index`` beside the
machine's torch.

    .venv/bin/python bench/gpu_bundle.py                   # download into bench/wheels/ (from PyPI)
    .venv/bin/python bench/gpu_bundle.py --out DIR         # or into DIR
    python3 bench/gpu_bundle.py check WHEELS               # one line: the bundle is complete, or what is missing
    python3 bench/gpu_bundle.py install WHEELS TARGET      # on the GPU machine (gpu_check.sh does both)

Building writes ``bundle.txt`` (the pins) beside the wheels, prints each wheel and the size of the
bundle plus what else travels (the repository's files that git does not ignore), and fails if that
is over ``SIZE_LIMIT_MB``. Only the standard library is imported at the top: ``check`` and
``install`` run on the GPU machine before anything is installed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The GPU machine's Python packages (/work/.library/device/KINDS.md, "Python packages already there",
#: as read on 2026-11-17 on an nvidia-h200 machine): never carried, never looked into.
_DEVICE_PACKAGE_LIST = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec
patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools
shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server
tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3
uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
"""
DEVICE_PACKAGES = frozenset(_DEVICE_PACKAGE_LIST.split())
#: Packages the GPU machine has at a version the kit cannot use, carried all the same (pure Python: the
#: carried version shadows the machine's for the check's processes only), with the reason.
CARRIED_ANYWAY = {
    "torchmetrics": "mosaicml 0.32.1 requires torchmetrics<1.7.5; the machine has 1.9.0 (KINDS.md's pip list)",
}
#: The GPU machine's interpreter and platform, for the requirements' environment markers.
TARGET_ENVIRONMENT = {
    "python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
    "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
    "platform_machine": "x86_64", "os_name": "posix",
}
#: pip's selectors for that interpreter: manylinux wheels for CPython 3.12 (pip matches each glibc
#: version exactly, so the common ones are named), or pure-Python ones.
TARGET_WHEEL_TAGS = ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312", "--abi", "abi3",
                     "--abi", "none", *(arg for tag in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
                                                          "manylinux_2_26_x86_64", "manylinux_2_17_x86_64",
                                                          "manylinux2014_x86_64", "manylinux1_x86_64")
                                         for arg in ("--platform", tag))]
#: What may travel to the GPU machine, wheels and repository together (the device tool's limit is 64 MiB).
SIZE_LIMIT_MB = 60
#: The list of pins written beside the wheels, which ``check`` compares the wheels with.
MANIFEST = "bundle.txt"
DEFAULT_OUT = REPO / "bench" / "wheels"


def canonical(name: str) -> str:
    """A distribution name as pip compares them: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def segkit_requirements() -> list[str]:
    """The names of segkit's own requirements: the library's and the teaching layer's (pyproject.toml's
    ``dependencies`` and its ``teaching`` extra; the check runs a notebook)."""
    from packaging.requirements import Requirement

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the test extra's tomli
        import tomli as tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = [*project["dependencies"], *project["optional-dependencies"]["teaching"]]
    return [Requirement(line).name for line in lines]


def requirement_closure(roots: tuple[str, ...], stop_at: frozenset[str] = frozenset(),
                        environment: dict[str, str] | None = None) -> dict[str, list]:
    """Every distribution that ``roots`` need on the target, transitively, with the requirements
    naming it: ``{canonical name: [packaging Requirement, ...]}`` (a root's list is empty unless
    another distribution requires it too). Names in ``stop_at`` are listed but not looked into.
    ``environment``: the markers' interpreter and platform (default the GPU machine's; ``{}``: this one).

    Raises:
        SystemExit: a needed distribution is not installed here, so its requirements are unknown.
    """
    from packaging.requirements import Requirement

    target = TARGET_ENVIRONMENT if environment is None else environment
    needed: dict[str, list] = {canonical(root): [] for root in roots}
    queue, seen = [(root, ()) for root in roots], set()
    while queue:
        name, extras = queue.pop()
        if (canonical(name), extras) in seen or canonical(name) in stop_at:
            continue
        seen.add((canonical(name), extras))
        try:
            declared = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            sys.exit(f"{name} is needed but not installed here; install it in .venv first")
        for text in declared:
            requirement = Requirement(text)
            if requirement.marker and not any(
                    requirement.marker.evaluate({**target, "extra": extra}) for extra in ("", *extras)):
                continue
            queue.append((requirement.name, tuple(sorted(requirement.extras))))
            needed.setdefault(canonical(requirement.name), []).append(requirement)
    return needed


def bundle_pins() -> dict[str, str]:
    """``{distribution: version}`` of the bundle: the closure of segkit's requirements that the GPU
    machine lacks (plus ``CARRIED_ANYWAY``), at the versions installed here."""
    kept_out = DEVICE_PACKAGES - CARRIED_ANYWAY.keys()
    closure = requirement_closure(tuple(segkit_requirements()), stop_at=kept_out)
    return {name: importlib.metadata.version(name) for name in sorted(closure) if name not in kept_out}


def travelling_bytes() -> int:
    """Bytes of the repository's files that travel to the GPU machine: tracked, and untracked but not ignored."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout
    paths = {REPO / name for name in listed.decode().split("\0") if name}
    return sum(path.stat().st_size for path in paths if path.is_file())


def build(out: Path) -> int:
    """Download the bundle into ``out`` and write its pins; print its wheels and size. Returns the exit status."""
    pins = bundle_pins()
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("*.whl"), out / MANIFEST]:
        stale.unlink(missing_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", *TARGET_WHEEL_TAGS,
                    "--dest", str(out), "--quiet", "--disable-pip-version-check",
                    *(f"{name}=={version}" for name, version in pins.items())], check=True)
    wheels = sorted(out.glob("*.whl"))
    missing = set(pins) - {wheel_distribution(wheel) for wheel in wheels}
    if missing:
        print(f"no wheel came for {', '.join(sorted(missing))}", file=sys.stderr)
        return 1
    (out / MANIFEST).write_text("# bench/gpu_bundle.py's pins: one wheel each in this folder\n"
                                + "".join(f"{name}=={version}\n" for name, version in pins.items()))
    for wheel in wheels:
        print(f"{wheel.stat().st_size / 1e6:7.2f} MB  {wheel.name}")
    bundle, repository = sum(wheel.stat().st_size for wheel in wheels), travelling_bytes()
    total_mb = (bundle + repository) / 1e6
    print(f"{len(wheels)} wheels {bundle / 1e6:.1f} MB + repository {repository / 1e6:.1f} MB = {total_mb:.1f} MB "
          f"(limit {SIZE_LIMIT_MB} MB; the device tool's is 64 MiB = 67.1 MB)")
    if total_mb > SIZE_LIMIT_MB:
        print(f"the bundle and the repository exceed {SIZE_LIMIT_MB} MB", file=sys.stderr)
        return 1
    return 0


def wheel_distribution(wheel: Path) -> str:
    """The canonical distribution name of a wheel file (``name-version-...-tags.whl``)."""
    return canonical(wheel.name.split("-")[0])


def wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def check(wheels_folder: Path) -> int:
    """Whether ``wheels_folder`` holds the wheel of every pin of its ``bundle.txt``; one line either way."""
    how = "build it here with `.venv/bin/python bench/gpu_bundle.py` and carry it (carry=[\"bench/wheels\"])"
    manifest = wheels_folder / MANIFEST
    if not manifest.is_file():
        what = "is missing" if not wheels_folder.is_dir() else f"has no {MANIFEST}"
        print(f"the wheel bundle {wheels_folder} {what}: {how}", file=sys.stderr)
        return 1
    pins = dict(line.split("==") for line in manifest.read_text().split("\n") if line and not line.startswith("#"))
    present = {(wheel_distribution(w), wheel_version(w)) for w in wheels_folder.glob("*.whl")}
    missing = [f"{name}=={version}" for name, version in pins.items()
               if (name, version) not in present and (name, version.replace("-", "_")) not in present]
    if missing:
        print(f"the wheel bundle {wheels_folder} is incomplete: no wheel for {', '.join(missing)}; {how}",
              file=sys.stderr)
        return 1
    print(f"wheel bundle {wheels_folder}: {len(pins)} wheels, as {MANIFEST} lists")
    return 0


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
                           "--no-compile", "--disable-pip-version-check", "--upgrade", "--target", str(target),
                           *map(str, chosen)])
    if done.returncode == 0:
        print(f"installed {len(chosen)} of {len(wheels)} wheels into {target}")
    return done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the wheels (default bench/wheels)")
    checking = commands.add_parser("check", help="say in one line whether a bundle is complete")
    checking.add_argument("wheels", type=Path)
    installing = commands.add_parser("install", help="install a bundle offline into a folder for PYTHONPATH")
    installing.add_argument("wheels", type=Path)
    installing.add_argument("target", type=Path)
    args = parser.parse_args()
    if args.command == "check":
        return check(args.wheels)
    if args.command == "install":
        return install(args.wheels, args.target)
    return build(args.out)


if __name__ == "__main__":
    sys.exit(main())

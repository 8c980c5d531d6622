"""bench/gpu_check.py in its CPU mode, and the wheel bundle of bench/gpu_bundle.py (nothing downloaded)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from segkit.profiles import REFERENCE_TRAIN_FLOPS_PER_IMAGE, get_profile
from tests.conftest import REPO, subprocess_env
from tests.test_environment import pyproject_requirements


def load_bench(name: str):
    """A bench/ script as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


gpu_check = load_bench("gpu_check")
gpu_bundle = load_bench("gpu_bundle")


@pytest.fixture(scope="module")
def cpu_report(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("gpu-check") / "report.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--cpu", "--json", str(path)],
                          capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "4 passed, 0 failed, 0 skipped" in done.stdout
    return json.loads(path.read_text())


def test_cpu_mode_runs_every_part(cpu_report):
    assert cpu_report["mode"] == "cpu" and cpu_report["passed"]
    assert {name: part["status"] for name, part in cpu_report["parts"].items()} == {
        "hot": "PASS", "throughput": "PASS", "gpu profile": "PASS", "kill/resume": "PASS"}
    assert cpu_report["seconds"] < cpu_report["budget_s"]


def test_cpu_mode_sees_every_algorithm_of_hot(cpu_report):
    hot = cpu_report["parts"]["hot"]
    assert hot["steps"] == 8 and hot["loss_last_third"] < hot["loss_first_third"]
    assert hot["sam_second_passes"] == 8 and hot["steps_skipped_by_scaler"] == 0  # fp32: no scaler skips
    assert hot["optimizer"] == "SAMOptimizer" and hot["channels_last"] and hot["ema_started"]
    assert 0 <= hot["mixup_weight"] <= 0.5 and hot["microbatch"] == 4 and hot["images_per_second"] > 0


def test_cpu_mode_measures_speed_against_the_assumption(cpu_report):
    throughput, profile = cpu_report["parts"]["throughput"], cpu_report["parts"]["gpu profile"]
    assert throughput["peak_used"].startswith("CPU: measured fp32") and 0 < throughput["fp32"]["mfu"] < 1.5
    assert profile["assumed_tflop_per_s"] == 40 and profile["step_s"] > 0
    assert 0 < profile["epoch_scale_at_measured_speed"] < profile["profile_epoch_scale"]  # a CPU is slower


def test_cpu_mode_resumes_a_killed_run_exactly(cpu_report):
    resumed = cpu_report["parts"]["kill/resume"]
    assert resumed["exact"] and resumed["run_to_run_difference"] == 0
    assert resumed["evaluations_before_kill"] == 1 and resumed["steps_after_resume"] == 2


def test_the_flop_constant_is_the_counted_forward_times_three():
    assert 3 * gpu_check.forward_flops_per_image(get_profile("gpu")) == pytest.approx(
        REFERENCE_TRAIN_FLOPS_PER_IMAGE, rel=1e-3)


def test_a_missed_sam_pass_fails_the_check():
    step = {"microbatch_start": 4, "microbatch_end": 4, "scale_start": None, "scale_end": None}
    with pytest.raises(gpu_check.CheckFailed, match=r"steps \[2\] ran \[1\] passes"):
        gpu_check.sam_passes([{**step, "step": 1, "passes": 2}, {**step, "step": 2, "passes": 1}])
    scaled = {**step, "scale_start": 65536.0, "scale_end": 32768.0}  # the scaler found inf: SAM skips its ascent
    assert gpu_check.sam_passes([{**scaled, "step": 1, "passes": 1}, {**step, "step": 2, "passes": 2}]) == {
        "sam_second_passes": 1, "steps_skipped_by_scaler": 1}


# --- the wheel bundle ---------------------------------------------------------------------------------

def test_the_bundle_starts_from_segkits_own_requirements():
    declared = set(map(gpu_bundle.canonical, pyproject_requirements()))
    assert set(map(gpu_bundle.canonical, gpu_bundle.TRAINING_REQUIREMENTS)) <= declared


def test_every_pin_satisfies_what_requires_it_except_torchvision():
    """torchvision is pinned to the build for the GPU machine's torch 2.11, outside mosaicml's range:
    that is why the bundle installs without dependencies."""
    pins = gpu_bundle.bundle_pins()
    for name, requirements in gpu_bundle.requirement_closure(gpu_bundle.TRAINING_REQUIREMENTS).items():
        if name in pins and name != "torchvision":
            unmet = [str(r) for r in requirements if not r.specifier.contains(pins[name], prereleases=True)]
            assert not unmet, f"{name}=={pins[name]} does not meet {unmet}"


def link_distribution(name: str, site: Path) -> None:
    """Make an installed distribution importable from ``site`` (symlinks to its top-level files)."""
    distribution = importlib.metadata.distribution(name)
    for top in {Path(file).parts[0] for file in distribution.files or []} - {".."}:
        source = Path(distribution.locate_file(top))
        if source.exists() and not (site / top).exists():
            (site / top).symlink_to(source)


def test_the_bundle_and_torch_are_all_that_composer_and_the_engine_import(tmp_path):
    """A virtualenv holding only the bundle's distributions and torch's (as the GPU machine will, offline)
    imports Composer and segkit's engine."""
    venv.create(tmp_path / "bare", symlinks=True)
    site = next((tmp_path / "bare").glob("lib/python3*/site-packages"))
    for name in set(gpu_bundle.bundle_pins()) | set(gpu_bundle.requirement_closure((gpu_bundle.PREINSTALLED,))):
        link_distribution(name, site)
    done = subprocess.run([str(tmp_path / "bare" / "bin" / "python"), "-c", "import composer, segkit.engine"],
                          capture_output=True, text=True, timeout=120,
                          env={**subprocess_env(), "PYTHONPATH": str(REPO), "PYTHONNOUSERSITE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]


def test_compiled_wheels_give_way_to_the_machines_own(capsys):
    wheels = [Path("numpy-2.2.6-cp312-cp312-manylinux_2_17_x86_64.whl"), Path("mosaicml-0.32.1-py3-none-any.whl"),
              Path("no_such_package-1.0-cp312-cp312-manylinux_2_28_x86_64.whl")]
    assert [w.name.split("-")[0] for w in gpu_bundle.wheels_to_install(wheels)] == ["mosaicml", "no_such_package"]
    assert f"using the machine's numpy {importlib.metadata.version('numpy')}" in capsys.readouterr().out


def test_the_bundle_script_refuses_an_empty_folder(tmp_path, capsys):
    assert gpu_bundle.install(tmp_path, tmp_path / "site") == 1
    assert "no wheels in" in capsys.readouterr().err

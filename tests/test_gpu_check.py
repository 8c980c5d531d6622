"""bench/gpu_check.sh in its CPU mode (every part of bench/gpu_check.py at toy sizes), what the check
does on the GPU that the CPU mode cannot show (device names, the resume tolerance's floor, a FLOP-count
warning, the JSON after every part), and the wheel bundle of bench/gpu_bundle.py (nothing downloaded)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import nbformat
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
ALL_PARTS = ["hot", "evaluate", "throughput", "gpu-profile", "launcher", "notebook", "kill-resume"]


def run_script(*args: str, out: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), *args], capture_output=True, text=True,
                          timeout=900, env={**subprocess_env(), "OUT": str(out), "PYTHON": sys.executable, **env})


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory) -> tuple[str, dict, Path]:
    """``bash bench/gpu_check.sh --cpu``: its output, the JSON it left in $OUT, and $OUT."""
    out = tmp_path_factory.mktemp("gpu-check-out")
    done = run_script("--cpu", out=out)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "7 passed, 0 failed, 0 skipped" in done.stdout
    return done.stdout, json.loads((out / "gpu_check.json").read_text()), out


def test_cpu_mode_runs_every_part_within_its_budget(cpu_run):
    _, report, _ = cpu_run
    assert report["mode"] == "cpu" and report["passed"] and report["running"] is None
    assert list(report["parts"]) == ALL_PARTS and {part["status"] for part in report["parts"].values()} == {"PASS"}
    assert report["seconds"] < report["budget_s"]


def test_the_log_holds_all_output_and_the_first_lines_name_the_device(cpu_run):
    stdout, report, out = cpu_run
    assert (out / "gpu_check.log").read_text() == stdout
    first, second = stdout.splitlines()[:2]
    assert first == "gpu_check.sh: no nvidia-smi here"  # on a GPU machine: nvidia-smi's name, memory and driver
    assert second.startswith(f"gpu_check: device {report['device']} (cpu mode); python ")
    assert report["device"] == f"CPU ({os.cpu_count()} cores)"


def test_mfu_lines_are_printed_after_the_part_and_in_the_recap(cpu_run):
    stdout, report, _ = cpu_run
    lines = [line for line in stdout.splitlines() if line.startswith("MFU ")]
    assert len(lines) == 2 and lines[0] == lines[1]  # one per precision (fp32 on the CPU), twice
    fp32 = report["parts"]["throughput"]["fp32"]
    assert lines[0].startswith(f"MFU fp32: {100 * fp32['mfu']:.1f}% of the ")
    assert f": {fp32['tflop_per_s']:g} TFLOP/s, {fp32['images_per_second']:g} images/s" in lines[0]


def test_cpu_mode_sees_every_algorithm_of_hot(cpu_run):
    hot = cpu_run[1]["parts"]["hot"]
    assert hot["steps"] == 8 and hot["loss_last_third"] < hot["loss_first_third"]
    assert hot["sam_second_passes"] == 8 and hot["steps_skipped_by_scaler"] == 0  # fp32: no scaler skips
    assert hot["optimizer"] == "SAMOptimizer" and hot["channels_last"] and hot["ema_started"]
    assert 0 <= hot["mixup_weight"] <= 0.5 and hot["microbatch"] == 4 and hot["images_per_second"] > 0


def test_the_hot_runs_weights_evaluate_as_trained_with_and_without_tta(cpu_run):
    stdout, report, _ = cpu_run
    evaluated = report["parts"]["evaluate"]
    assert evaluated["loaded_on"] == "cpu" and evaluated["miou_difference_from_run"] == 0
    assert evaluated["single_scale"]["miou"] == evaluated["run_miou"]
    assert evaluated["single_scale"]["images_per_second"] > evaluated["tta"]["images_per_second"] > 0  # 12 passes
    assert "evaluate on cpu, 4 images: tta " in stdout


def test_cpu_mode_measures_speed_against_the_assumption(cpu_run):
    throughput, profile = cpu_run[1]["parts"]["throughput"], cpu_run[1]["parts"]["gpu-profile"]
    assert throughput["peak_used"].startswith("CPU (") and "measured fp32 1024^2 matmul rate" in throughput["peak_used"]
    assert 0 < throughput["fp32"]["mfu"] < 1.5 and throughput["fp32"]["peak_tflop_per_s"] is None
    assert profile["assumed_tflop_per_s"] == 40 and profile["step_s"] > 0 and profile["warnings"] == []
    assert 0 < profile["epoch_scale_at_measured_speed"] < profile["profile_epoch_scale"]  # a CPU is slower


def test_training_through_composers_launcher_saves_the_bare_network(cpu_run):
    launched = cpu_run[1]["parts"]["launcher"]
    assert launched["processes"] == launched["world_size"] == 2 and launched["steps"] == 2
    assert launched["loaded_on"] == "cpu" and launched["miou"] == launched["run_miou"]


def test_notebook_03_runs_headless_and_ends_with_its_figure(cpu_run):
    _, report, out = cpu_run
    notebook = report["parts"]["notebook"]
    assert notebook["run"] == "hot-tiny-seed17-2ba" and notebook["device"] == "cpu" and notebook["steps"] == 2
    book = nbformat.read(out / "gpu_check_03_hot.ipynb", as_version=4)  # copied beside the JSON
    injected = next(cell for cell in book.cells if "injected-parameters" in cell.metadata.get("tags", []))
    assert 'profile = "tiny"' in injected.source and 'weights = "none"' in injected.source


def test_cpu_mode_resumes_a_killed_run_exactly(cpu_run):
    resumed = cpu_run[1]["parts"]["kill-resume"]
    assert resumed["exact"] and resumed["run_to_run_difference"] == 0
    assert set(resumed["tolerances"].values()) == {0.0}  # no floor on the CPU
    assert resumed["evaluations_before_kill"] == 1 and resumed["steps_after_resume"] == 2


# --- what only the GPU would show --------------------------------------------------------------------

def test_kill_resume_has_a_noise_floor_on_the_gpu_only():
    exact = {"miou": 0.0, "val_loss": 0.0}
    last_bits = {"miou": 0.02, "val_loss": 1e-5}
    assert gpu_check.resume_tolerances(last_bits, exact, gpu_check.GPU_SIZES) == {"miou": 0.5, "val_loss": 0.01}
    assert gpu_check.resume_tolerances(last_bits, exact, gpu_check.CPU_SIZES) == {"miou": 0.0, "val_loss": 0.0}
    noisy = {"miou": 0.4, "val_loss": 0.02}
    assert gpu_check.resume_tolerances(last_bits, noisy, gpu_check.GPU_SIZES) == {"miou": 0.8, "val_loss": 0.04}


@pytest.mark.parametrize("name,tflops", [("NVIDIA H200", 989.4), ("NVIDIA H100 80GB HBM3", 989.4),
                                         ("NVIDIA H100 PCIe", 756.5), ("NVIDIA H200 NVL", 835.5),
                                         ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA L4", None)])
def test_the_gpu_peak_comes_from_the_device_name(name, tflops):
    assert gpu_check.datasheet_peak(name) == (None if tflops is None else tflops * 1e12)


def test_the_flop_constant_is_the_counted_forward_times_three_and_another_count_is_a_warning(monkeypatch):
    assert 3 * gpu_check.forward_flops_per_image(get_profile("gpu")) == pytest.approx(
        REFERENCE_TRAIN_FLOPS_PER_IMAGE, rel=1e-3)
    monkeypatch.setattr(gpu_check, "forward_flops_per_image", lambda profile: 1.1 * REFERENCE_TRAIN_FLOPS_PER_IMAGE / 3)
    warning = gpu_check.flop_count_warning()
    assert "segkit.profiles assumes 1.5216" in warning and "+10.0%" in warning
    assert gpu_check.notes("gpu-profile", {"warnings": [warning]}) == [f"WARNING gpu-profile: {warning}"]


def test_the_json_is_written_before_and_after_every_part(tmp_path, monkeypatch):
    """What a kill in the middle of a part leaves: the parts before it, and its name as running."""
    path = tmp_path / "out" / "gpu_check.json"
    seen = {}

    def first(ctx):
        return {"value": 1}

    def second(ctx):
        seen.update(json.loads(path.read_text()))
        return {}

    monkeypatch.setattr(gpu_check, "PARTS", {"first": first, "second": second})
    monkeypatch.setattr(gpu_check, "environment", lambda sizes: {"python": "3"})
    monkeypatch.setattr(gpu_check, "make_scenes", lambda root, *sizes: root)
    sizes = dataclasses.replace(gpu_check.CPU_SIZES, part_seconds={"first": 0, "second": 0})
    report = gpu_check.check(sizes, 60, ["second", "first"], path)
    assert seen["running"] == "second" and list(seen["parts"]) == ["first"]
    assert seen["parts"]["first"]["status"] == "PASS" and seen["parts"]["first"]["value"] == 1
    assert list(report["parts"]) == ["first", "second"] and json.loads(path.read_text()) == report


def test_a_part_that_measured_and_failed_keeps_its_numbers(tmp_path):
    ctx = gpu_check.Context(gpu_check.CPU_SIZES, tmp_path, tmp_path, deadline=float("inf"))
    result = gpu_check.run_part("evaluate", lambda ctx: {"images_per_second": 9.0, "failures": ["ran out"]}, ctx)
    assert result["status"] == "FAIL" and result["reason"] == "ran out" and result["images_per_second"] == 9.0
    assert gpu_check.summary_line("evaluate", result).startswith("FAIL evaluate (")


def test_parts_are_chosen_by_name():
    assert gpu_check.parse_parts("evaluate,hot") == ["evaluate", "hot"] and gpu_check.parse_parts("all") == ALL_PARTS
    with pytest.raises(argparse.ArgumentTypeError, match="unknown part.* gpu profile; choose from hot, evaluate"):
        gpu_check.parse_parts("hot,gpu profile")


def test_evaluate_without_the_hot_run_is_skipped_with_what_to_pass(tmp_path):
    ctx = gpu_check.Context(gpu_check.CPU_SIZES, tmp_path, tmp_path, deadline=0)
    with pytest.raises(gpu_check.CannotRun, match=r"--parts hot,evaluate"):
        gpu_check.check_evaluate(ctx)


def test_a_missed_sam_pass_fails_the_check():
    step = {"microbatch_start": 4, "microbatch_end": 4, "scale_start": None, "scale_end": None}
    with pytest.raises(gpu_check.CheckFailed, match=r"steps \[2\] ran \[1\] passes"):
        gpu_check.sam_passes([{**step, "step": 1, "passes": 2}, {**step, "step": 2, "passes": 1}])
    scaled = {**step, "scale_start": 65536.0, "scale_end": 32768.0}  # the scaler found inf: SAM skips its ascent
    assert gpu_check.sam_passes([{**scaled, "step": 1, "passes": 1}, {**step, "step": 2, "passes": 2}]) == {
        "sam_second_passes": 1, "steps_skipped_by_scaler": 1}


# --- the wheel bundle ---------------------------------------------------------------------------------

@pytest.mark.parametrize("contents,message", [
    (None, "the wheel bundle {wheels} is missing: build it here with `.venv/bin/python bench/gpu_bundle.py`"),
    ({}, "the wheel bundle {wheels} has no bundle.txt"),
    ({"bundle.txt": "mosaicml==0.32.1\nplotly==7.1.0\n", "mosaicml-0.32.1-py3-none-any.whl": ""},
     "the wheel bundle {wheels} is incomplete: no wheel for plotly==7.1.0;"),
])
def test_the_script_stops_in_one_line_without_its_bundle(tmp_path, contents, message):
    wheels = tmp_path / "wheels"
    if contents is not None:
        wheels.mkdir()
        for name, text in contents.items():
            (wheels / name).write_text(text)
    done = run_script(out=tmp_path / "out", WHEELS=str(wheels))
    assert done.returncode == 2 and done.stderr == ""
    device_line, error = done.stdout.splitlines()
    assert device_line.startswith("gpu_check.sh: ") and error.startswith(message.format(wheels=wheels))
    assert error.endswith('carry it (carry=["bench/wheels"])')
    assert (tmp_path / "out" / "gpu_check.log").read_text() == done.stdout


def test_a_complete_bundle_passes_its_check(tmp_path, capsys):
    (tmp_path / "bundle.txt").write_text("# pins\nruamel-yaml==0.19.1\nmosaicml==0.32.1\n")
    for wheel in ("ruamel_yaml-0.19.1-py3-none-any.whl", "mosaicml-0.32.1-py3-none-any.whl"):
        (tmp_path / wheel).touch()
    assert gpu_bundle.check(tmp_path) == 0
    assert capsys.readouterr().out == f"wheel bundle {tmp_path}: 2 wheels, as bundle.txt lists\n"


def test_the_bundle_starts_from_segkits_own_requirements():
    assert gpu_bundle.segkit_requirements() == list(pyproject_requirements())


def test_the_bundle_leaves_out_what_the_gpu_machine_has_and_carries_the_notebooks_packages():
    pins = gpu_bundle.bundle_pins()
    assert not set(pins) & (gpu_bundle.DEVICE_PACKAGES - gpu_bundle.CARRIED_ANYWAY.keys())
    for preinstalled in ("torch", "torchvision", "numpy", "pillow", "pyyaml", "psutil", "tqdm", "matplotlib"):
        assert preinstalled not in pins
    for needed in ("mosaicml", "papermill", "ipykernel", "nbclient", "nbformat", "ipywidgets", "plotly", "anywidget",
                   "nbconvert", "jupyter-client", "pyzmq"):
        assert needed in pins
    assert pins["torchmetrics"] == importlib.metadata.version("torchmetrics")  # the machine's 1.9.0 is too new


def test_every_needed_distribution_is_carried_or_on_the_gpu_machine():
    pins = gpu_bundle.bundle_pins()
    closure = gpu_bundle.requirement_closure(tuple(gpu_bundle.segkit_requirements()), gpu_bundle.DEVICE_PACKAGES)
    assert set(closure) <= set(pins) | gpu_bundle.DEVICE_PACKAGES
    for name, requirements in closure.items():
        if name in pins:
            unmet = [str(r) for r in requirements if not r.specifier.contains(pins[name], prereleases=True)]
            assert not unmet, f"{name}=={pins[name]} does not meet {unmet}"


def link_distribution(name: str, site: Path) -> None:
    """Make an installed distribution importable from ``site`` (symlinks to its top-level files)."""
    distribution = importlib.metadata.distribution(name)
    for top in {Path(file).parts[0] for file in distribution.files or []} - {".."}:
        source = Path(distribution.locate_file(top))
        if source.exists() and not (site / top).exists():
            (site / top).symlink_to(source)


def test_the_bundle_and_the_gpu_machines_packages_are_all_that_the_check_imports(tmp_path):
    """A virtualenv holding only the bundle's distributions and those of the GPU machine's list that are
    installed here (as the GPU machine will, offline) imports Composer, segkit's engine and the notebook
    machinery."""
    venv.create(tmp_path / "bare", symlinks=True)
    site = next((tmp_path / "bare").glob("lib/python3*/site-packages"))
    installed = {gpu_bundle.canonical(d.metadata["Name"]) for d in importlib.metadata.distributions()}
    for name in set(gpu_bundle.bundle_pins()) | (gpu_bundle.DEVICE_PACKAGES & installed):
        link_distribution(name, site)
    imports = "import composer, segkit.engine, segkit.headless, segkit.notebooks, ipykernel, nbconvert, anywidget"
    done = subprocess.run([str(tmp_path / "bare" / "bin" / "python"), "-c", imports],
                          capture_output=True, text=True, timeout=300,
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

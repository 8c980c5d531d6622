"""bench/gpu_check.sh in its CPU mode (every part of bench/gpu_check.py at toy sizes), what the check
does on the GPU that the CPU mode cannot show (device names, the resume tolerance's floor, a FLOP-count
warning, the JSON after every part, the knee's plan, the two device calls' time), and the wheel bundle of
bench/gpu_bundle.py (nothing downloaded)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from segkit.profiles import REFERENCE_TRAIN_FLOPS_PER_IMAGE, get_profile
from tests.conftest import REPO, load_bench, pyproject_requirements, subprocess_env
from tests.system.conftest import bare_python

gpu_check = load_bench("gpu_check")
gpu_bundle = load_bench("gpu_bundle")
ALL_PARTS = ["hot", "evaluate", "throughput", "profiler", "ab", "gpu-profile", "loader", "launcher", "notebook",
             "kill-resume", "knee"]


def run_script(*args: str, out: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), *args], capture_output=True, text=True,
                          timeout=900, env={**subprocess_env(), "OUT": str(out), "PYTHON": sys.executable, **env})


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory) -> tuple[str, dict, Path]:
    """``bash bench/gpu_check.sh --cpu``: its output, the JSON it left in $OUT, and $OUT."""
    out = tmp_path_factory.mktemp("gpu-check-out")
    done = run_script("--cpu", out=out)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "11 passed, 0 failed, 0 skipped" in done.stdout
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


def printed(stdout: str, prefix: str) -> list[str]:
    """The lines that start with ``prefix``, once each (a part's lines come again in the recap)."""
    lines = [line for line in stdout.splitlines() if line.startswith(prefix)]
    return lines[:len(lines) // 2]


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


def test_the_data_wait_is_reported_for_steady_steps_and_epoch_starts_apart(cpu_run):
    stdout, report, _ = cpu_run
    hot, profile = report["parts"]["hot"], report["parts"]["gpu-profile"]
    # 4 steps an epoch on the CPU's 16 scenes: hot's 8 steps start one epoch after the first step, and so do
    # the gpu profile's 6; the first step and the epoch starts are not steady
    assert (hot["steady_steps"], hot["epoch_start_steps"]) == (6, 1)
    assert (profile["steady_steps"], profile["epoch_start_steps"]) == (4, 1) and profile["timed_steps"] == 4
    for name, part in (("hot", hot), ("gpu-profile", profile)):
        assert all(0 <= part[key] < 1 for key in ("data_wait_steady", "data_wait_epoch_starts", "data_wait_all_steps"))
        assert printed(stdout, f"data wait {name}: ") == [gpu_check.data_wait_line(name, part)]


def step(waited: float, computed: float, starts_epoch: bool = False, microbatch: int = 4) -> dict:
    return {"waited_s": waited, "wall_s": waited + computed, "starts_epoch": starts_epoch,
            "microbatch_start": microbatch, "microbatch_end": microbatch}


def test_the_data_wait_of_steady_steps_leaves_out_the_first_step_and_epoch_starts():
    steps = [step(9.0, 1.0, starts_epoch=True), step(0.0, 1.0), step(1.0, 1.0),
             step(3.0, 1.0, starts_epoch=True), step(0.0, 1.0)]
    wait = gpu_check.data_wait(steps)
    assert wait["data_wait_steady"] == round(1 / 4, 3) and wait["steady_steps"] == 3  # steps 2, 3 and 5
    assert wait["data_wait_epoch_starts"] == 0.75 and wait["epoch_start_steps"] == 1  # step 4 alone
    assert wait["data_wait_all_steps"] == round(13 / 18, 3) and wait["first_step_wait_s"] == 9.0
    assert gpu_check.data_wait_line("hot", wait) == ("data wait hot: steady steps 25.0% (3 steps), epoch starts "
                                                     "75.0% (1 step), all steps 72.2%; the first step waited 9 s")
    searching = [step(0.0, 5.0, microbatch=8) | {"microbatch_end": 4}, *steps[1:]]  # automatic microbatching
    assert gpu_check.data_wait(searching)["steady_steps"] == 2  # the step after the search is warm-up
    assert gpu_check.data_wait([step(2.0, 1.0, starts_epoch=True)])["data_wait_epoch_starts"] is None


def test_cpu_mode_measures_speed_against_the_assumption(cpu_run):
    throughput, profile = cpu_run[1]["parts"]["throughput"], cpu_run[1]["parts"]["gpu-profile"]
    assert throughput["peak_used"].startswith("CPU (") and "measured fp32 1024^2 matmul rate" in throughput["peak_used"]
    assert 0 < throughput["fp32"]["mfu"] < 1.5 and throughput["fp32"]["peak_tflop_per_s"] is None
    assert profile["assumed_tflop_per_s"] == 40 and profile["step_s"] > 0 and profile["warnings"] == []
    assert 0 < profile["epoch_scale_at_measured_speed"] < profile["profile_epoch_scale"]  # a CPU is slower


def test_the_profiler_ranks_the_reference_steps_operators_and_writes_its_table(cpu_run):
    stdout, report, out = cpu_run
    profiled = report["parts"]["profiler"]
    assert profiled["batch"] == 4 and profiled["precision"] == "fp32" and profiled["steps"] == 2
    top = profiled["top"]
    assert 3 <= len(top) <= gpu_check.CPU_SIZES.top_kernels
    assert [row["ms_per_step"] for row in top] == sorted((row["ms_per_step"] for row in top), reverse=True)
    assert 0 < sum(row["share_of_busy"] for row in top) <= 1.0001
    assert any(row["name"] == "aten::convolution_backward" for row in top)  # on the CPU: operators
    assert not any(row["name"].startswith("Optimizer.step") for row in top)  # annotations span operators
    assert 0 < profiled["busy_ms_per_step"] <= profiled["wall_ms_per_step"] * 1.05
    table = (out / profiled["table_file"]).read_text().splitlines()
    head = printed(stdout, "profiler, 2 reference steps of batch 4 (fp32, channels-last): operators busy ")
    assert head == [table[0]] and table[1].split(maxsplit=5)[-1] == top[0]["name"]
    assert "torch's operator table:" in table


def test_each_speed_change_is_an_ab_line_at_the_same_microbatch(cpu_run):
    stdout, report, _ = cpu_run
    ab = report["parts"]["ab"]
    changes = ab["changes"]
    assert list(changes) == ["loss tail", "cudnn.benchmark", "channels-last", "uint8 masks", "torch.compile"]
    assert ab["microbatch"] == 4 and ab["precision"] == "fp32"
    lines = printed(stdout, "A/B ")
    assert len(lines) == 5 and all(line.endswith("microbatch 4") or "microbatch 4;" in line for line in lines)
    for (change, sides), line in zip(changes.items(), lines, strict=True):
        assert line.startswith(f"A/B {change}") and sides["b_over_a"] == pytest.approx(
            sides["b"]["images_per_second"] / sides["a"]["images_per_second"], rel=1e-3)
        printed_ratio = float(line.split("B/A ")[1].split("x")[0])  # the JSON's is rounded apart: within 0.001
        assert printed_ratio == pytest.approx(sides["b_over_a"], abs=1e-3)
        mfu = sides["a"]["mfu"]
        assert (mfu is None) == (change == "uint8 masks")  # the copy alone has no FLOPs
    for change in ("loss tail", "cudnn.benchmark", "channels-last", "torch.compile"):
        a = changes[change]["a"]
        assert a["mfu"] == pytest.approx(a["images_per_second"] * 3 * gpu_check.forward_flops_per_image(
            get_profile("tiny")) / report["parts"]["throughput"]["fp32"]["matmul_tflop_per_s"] / 1e12, rel=0.05)
    masks = changes["uint8 masks"]
    assert masks["a"]["label"] == f"int64, {4 * 32 * 32 * 8 / 1e6:.3g} MB"  # the tiny profile's 4 masks of 32^2
    compiled = changes["torch.compile"]
    assert compiled["backend"] == "eager" and compiled["compile_s"] > 0
    assert compiled["graph_breaks"] == 0  # the model and segkit's loss trace as one graph
    assert re.search(r"; compile \d+\.\d s, graph breaks 0$", lines[-1])


def test_the_loss_tail_of_the_ab_computes_the_same_loss_as_segkit():
    """The A side (the loss before it kept the logits' precision) and segkit.losses are one objective."""
    from segkit.losses import SegmentationLoss

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 6, 7, generator=generator, dtype=torch.float64)
    masks = torch.randint(-1, 4, (2, 6, 7), generator=generator)  # class 4 absent, some pixels ignored
    old, new = gpu_check.fp32_tail_loss(logits, masks), SegmentationLoss()(logits, masks)
    for key in ("total", "cross_entropy", "dice"):
        assert float(old[key]) == pytest.approx(float(new[key]), rel=1e-6)


def test_the_ab_of_masks_copies_the_same_labels_in_a_quarter_of_the_bytes():
    copies = gpu_check.mask_copy_seconds(batch=2, size=8, device="cpu", repeats=2)
    assert copies["int64_bytes"] == 2 * 8 * 8 * 8 and copies["uint8_bytes"] == 2 * 8 * 8
    assert copies["int64_s"] > 0 and copies["uint8_s"] > 0


def test_a_compile_that_overruns_its_budget_is_a_line_with_the_eager_side(tmp_path, monkeypatch):
    def stopped(command, timeout_s, log):
        log.write_text('noise\ncompile-ab {"eager_step_s": 0.5}\n')
        raise subprocess.TimeoutExpired(command, timeout_s)

    monkeypatch.setattr(gpu_check, "run_bounded", stopped)
    ctx = gpu_check.Context(gpu_check.CPU_SIZES, None, tmp_path, deadline=float("inf"))
    result = gpu_check.compile_ab(ctx, get_profile("tiny"), gpu_check.StepVariant(precision="fp32"), 4, 1e9, 1e12)
    assert result == {"eager": "(eager) 8 images/s", "backend": "eager",
                      "skipped": "the compiled step was not ready within the 90 s budget (eager)"}


def test_the_loader_alone_is_timed_at_each_worker_count_against_the_steps_demand(cpu_run):
    stdout, report, _ = cpu_run
    loader = report["parts"]["loader"]
    assert list(loader["workers"]) == ["1", "2"] and loader["batch"] == 4
    demand = loader["demand_images_per_second"]
    assert set(demand) == {"hot", "plain fp32 step", "gpu profile"}  # measured by the parts before it
    assert demand["hot"] == pytest.approx(report["parts"]["hot"]["images_per_second"], rel=0.01)
    for workers, measured in loader["workers"].items():
        assert measured["batches"] == 3 * int(workers) and measured["images_per_second"] > 0
        [line] = printed(stdout, f"loader, {workers} worker")
        times = float(re.search(r"; ([\d.]+)x the hot's ", line).group(1))
        assert times == pytest.approx(measured["images_per_second"] / demand["hot"], rel=0.01, abs=0.06)
    itemsize = {"int64": 8, "uint8": 1}[loader["masks_dtype"]]
    assert loader["images_dtype"] == "uint8" and loader["images_mb"] == pytest.approx(4 * 3 * 32 * 32 / 1e6, rel=0.01)
    assert loader["masks_mb"] == pytest.approx(4 * 32 * 32 * itemsize / 1e6, rel=0.01)
    assert loader["workers"]["2"]["prefetched_gb"] == pytest.approx(
        2 * 2 * (loader["images_mb"] + loader["masks_mb"]) / 1e3, rel=0.01)
    if Path("/dev/shm").is_dir():
        assert loader["dev_shm_gb"] > 0


def test_the_knee_calibrates_plans_and_trains_every_run_with_its_history(cpu_run):
    stdout, report, out = cpu_run
    knee = report["parts"]["knee"]
    assert knee["profile"] == "tiny" and [c["processes"] for c in knee["calibration"]] == [2]
    assert all(c["steps_per_s_each"] > 0 and c["epoch_s"] > 0 for c in knee["calibration"])
    assert knee["plan"]["processes"] == 2 and knee["plan"]["multipliers"] == [1, 2]
    assert knee["runs_planned"] == knee["runs_finished"] == 4 and knee["warnings"] == []
    histories = json.loads((out / knee["histories_file"]).read_text())
    # tiny: 2 epochs of 4 steps for the baseline; compressed into 20% of 2 and 4 epochs: 1 epoch each
    expected = {"x1-full-seed17": 2, "x1-short-seed17": 1, "x2-full-seed17": 4, "x2-short-seed17": 1}
    runs = {name: run for name, run in histories["runs"].items() if not name.startswith("calibrate")}
    assert {name: run["epochs"] for name, run in runs.items()} == expected
    for run in runs.values():  # one evaluation an epoch; the last after all of the run's steps
        assert len(run["history"]) == run["epochs"] and run["history"][-1]["step"] == 4 * run["epochs"]
        assert run["miou"] == run["history"][-1]["miou"]
    for key, multiplier in (("x1", 1), ("x2", 2)):
        entry = knee["summary"][key]
        full, short = runs[f"x{multiplier}-full-seed17"]["miou"], runs[f"x{multiplier}-short-seed17"]["miou"]
        assert entry["full_miou"] == {"17": full} and entry["short_miou"] == {"17": short}
        assert entry["ratio"] == pytest.approx(short / full, abs=1e-4)
        assert entry["past_knee"] == (entry["ratio"] >= 0.95)
        assert f"knee {key}: {4 * 2 * multiplier} steps full, 4 at 20%; mIoU full {full:.2f}, 20% {short:.2f}" in stdout
    assert knee["past_knee"] == (knee["candidate"] is not None) == any(e["past_knee"] for e in knee["summary"].values())
    assert len(printed(stdout, "CANDIDATE gpu-scenes: " if knee["past_knee"] else "knee: no setting reached")) == 1


CALIBRATIONS = [
    {"processes": 1, "start_s": 5.0, "first_epoch_extra_s": 1.0, "epoch_s": 0.5},
    {"processes": 4, "start_s": 10.0, "first_epoch_extra_s": 2.0, "epoch_s": 1.0},
]
RUNS = gpu_check.knee_runs(get_profile("cpu"), dataclasses.replace(gpu_check.GPU_SIZES, knee_seeds=(1, 2)))


def test_the_knee_runs_are_the_baseline_full_and_at_a_fifth_longest_first():
    assert [(run["name"], run["epochs"]) for run in RUNS[:3]] == [
        ("x8-full-seed1", 320), ("x8-full-seed2", 320), ("x4-full-seed1", 160)]
    assert {run["name"]: run["epochs"] for run in RUNS if run["length"] == "short"} == {
        "x8-short-seed1": 64, "x8-short-seed2": 64, "x4-short-seed1": 32, "x4-short-seed2": 32,
        "x2-short-seed1": 16, "x2-short-seed2": 16}
    assert [run["epochs"] for run in RUNS] == sorted((run["epochs"] for run in RUNS), reverse=True)


def test_the_knee_plan_keeps_the_most_multipliers_that_fit_then_the_quickest():
    # all of x2, x4, x8 on 4 processes: the x8 full runs take 10 + 2 + 320 = 332 s, one child each; the
    # others go to the least loaded child, the last x8 and x4 short runs to the x4 children: 10 + 3 x 2 + 160 + 80
    # + 64 + 32 = 354 s, x 1.15 = 407 s
    plan = gpu_check.knee_plan(RUNS, CALIBRATIONS, 420)
    assert plan["processes"] == 4 and plan["multipliers"] == [2, 4, 8] and plan["estimated_s"] == 354
    assert [len(runs) for runs in plan["assignments"]] == [2, 2, 4, 4]
    assert [run["name"] for run in plan["assignments"][2]] == ["x4-full-seed1", "x2-full-seed1", "x8-short-seed1",
                                                               "x4-short-seed1"]
    assert gpu_check.knee_plan(RUNS, CALIBRATIONS, 400)["multipliers"] == [2, 4]  # 407 s > 400: x8 left out
    # one process alone is quicker per epoch, but runs everything one after the other: x2 and x4 in 301 s
    alone = gpu_check.knee_plan(RUNS, CALIBRATIONS[:1], 420)
    assert alone["multipliers"] == [2, 4] and alone["estimated_s"] == 5 + 8 * 1 + 0.5 * 2 * (160 + 80 + 32 + 16)
    short = gpu_check.knee_plan(RUNS, CALIBRATIONS, 200)
    assert short["multipliers"] == [2, 4] and short["processes"] == 4 and short["estimated_s"] == 172
    assert gpu_check.knee_plan(RUNS, CALIBRATIONS, 20) is None


def test_the_knee_summary_and_candidate_from_records():
    runs = gpu_check.knee_runs(get_profile("cpu"), dataclasses.replace(gpu_check.GPU_SIZES, knee_multipliers=(2, 4),
                                                                      knee_seeds=(1, 2)))
    miou = {"x2-full-seed1": 50.0, "x2-short-seed1": 40.0, "x2-full-seed2": 52.0, "x2-short-seed2": 42.0,
            "x4-full-seed1": 50.0, "x4-short-seed1": 49.0, "x4-full-seed2": 50.0}  # x4's second short unfinished
    records = {name: {"miou": value, "wall_time": 100.0} for name, value in miou.items()}
    summary = gpu_check.knee_summary(get_profile("cpu"), runs, records)
    assert summary["x2"]["ratio"] == round(82 / 102, 4) and not summary["x2"]["past_knee"]
    assert summary["x4"]["seeds_with_both"] == [1] and summary["x4"]["ratio"] == 0.98 and summary["x4"]["past_knee"]
    assert (summary["x4"]["steps_full"], summary["x4"]["steps_short"]) == (160 * 25, 32 * 25)
    candidate = gpu_check.knee_candidate(get_profile("cpu"), summary, CALIBRATIONS)
    assert candidate["setting"] == "x4" and candidate["baseline_epochs"] == 160 and candidate["epoch_scale"] == 1.25
    assert candidate["alone_s_estimate"] == 5 + 1 + 160 * 0.5 and candidate["run_wall_s"] == 100.0


def test_the_two_device_calls_run_every_part_once_and_fit_the_device_time():
    """Each call within gpu_check.sh's TOTAL_SECONDS by the GPU's part seconds, the bundle's install (15 s)
    and the scenes where a part reads them (30 s); both and a machine start (30 s) leave a minute to rerun."""
    calls = gpu_check.CALLS
    assert sorted(name for names in calls.values() for name in names) == sorted(gpu_check.PARTS)
    for names in calls.values():
        assert list(names) == [name for name in gpu_check.PARTS if name in names]  # the order they run in
    total = int(re.search(r"^TOTAL_SECONDS=(\d+)", (REPO / "bench" / "gpu_check.sh").read_text(), re.M).group(1))
    seconds = {call: 15 + 30 * any(name in gpu_check.SCENE_PARTS for name in names)
               + sum(gpu_check.GPU_SIZES.part_seconds[name] for name in names) for call, names in calls.items()}
    assert all(value <= total for value in seconds.values()) and total + 30 <= 480  # timeout_s=480
    assert 30 + sum(seconds.values()) <= 15 * 60 - 60
    assert "evaluate" in calls["1"] and "hot" in calls["1"]  # evaluate reads hot's run


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


def test_a_device_call_is_named_by_its_number_not_beside_a_list_of_parts():
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--call", "2", "--parts", "hot"],
                          capture_output=True, text=True, timeout=60, env=subprocess_env())
    assert done.returncode == 2 and done.stderr.splitlines()[-1].endswith("give --parts or --call, not both")


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


def test_the_bundle_and_the_gpu_machines_packages_are_all_that_the_check_imports(tmp_path):
    """A virtualenv holding only the bundle's distributions and those of the GPU machine's list that are
    installed here (as the GPU machine will, offline) imports Composer, segkit's engine and the notebook
    machinery."""
    installed = {gpu_bundle.canonical(d.metadata["Name"]) for d in importlib.metadata.distributions()}
    python = bare_python(tmp_path / "bare",
                         set(gpu_bundle.bundle_pins()) | (gpu_bundle.DEVICE_PACKAGES & installed))
    imports = ("import composer, segkit.engine, segkit.teaching.headless, segkit.teaching.notebooks, ipykernel, "
               "nbconvert, anywidget")
    done = subprocess.run([str(python), "-c", imports],
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

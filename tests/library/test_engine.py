"""The real training path: Composer's Trainer on generated ADE-format data, run folders, checkpoints."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from segkit import checkpoints
from segkit.engine import train
from segkit.errors import ConfigError, RunError
from segkit.model import deeplabv3plus
from segkit.profiles import get_profile
from segkit.runs import Run
from segkit.spec import run_spec
from segkit.teaching import comparison
from tests.conftest import run_segkit, train_options

TIMING = ("wall_time", "images_per_second")


def without_timing(history):
    return [{k: v for k, v in entry.items() if k not in TIMING} for entry in history]


def test_two_step_cli_run_writes_metrics_and_a_reloadable_checkpoint(tmp_path, scenes_root):
    done = run_segkit("train", "--profile", "tiny", "--data", str(scenes_root), "--duration", "2ba",
                      "--save-folder", str(tmp_path), "--run-name", "smoke")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "smoke"
    assert "mIoU" in done.stdout and str(folder) in done.stdout
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "finished"
    assert metrics["recipe"]["name"] == "baseline" and metrics["profile"]["name"] == "tiny"
    assert {"torch", "mosaicml", "torchvision", "segkit"} <= set(metrics["versions"])
    (entry,) = metrics["history"]
    assert entry["step"] == 2
    assert {"epoch", "wall_time", "miou", "pixel_accuracy", "train_loss", "train_cross_entropy",
            "train_dice", "val_loss"} <= set(entry)
    assert 0 <= entry["miou"] <= 100 and entry["train_loss"] > 0

    # The checkpoint reloads into a fresh model with exactly the trained weights.
    checkpoint = checkpoints.safe_load(folder / "checkpoints" / "latest.pt")
    fresh = deeplabv3plus("resnet10", 16, 16, head_channels=16)
    fresh.load_state_dict({k.removeprefix("module."): v for k, v in checkpoint["state"]["model"].items()})
    trained = torch.load(folder / "model.pt", weights_only=True)
    assert trained.keys() == fresh.state_dict().keys()
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, trained[key]), key


def test_same_seed_same_history(tmp_path, scenes_root):
    runs = [train(run_spec("medium", "tiny", scenes_root, seed=3, duration="4ba"), save_folder=tmp_path,
                  run_name=f"run{i}", print_progress=False) for i in range(2)]
    assert len(runs[0].run.history) == 2  # 8 images, batch 4: an evaluation after each of 2 epochs
    assert without_timing(runs[0].run.history) == without_timing(runs[1].run.history)
    other = train(run_spec("medium", "tiny", scenes_root, seed=4, duration="4ba"), save_folder=tmp_path,
                  run_name="other", print_progress=False)
    assert without_timing(other.run.history) != without_timing(runs[0].run.history)


def test_rerun_of_a_finished_run_resumes_and_changes_nothing(tmp_path, scenes_root):
    first = train(run_spec("baseline", "tiny", scenes_root, duration="2ba"), save_folder=tmp_path, print_progress=False)
    written = {path: path.stat().st_mtime_ns for path in first.folder.rglob("*") if path.is_file()}
    again = train(run_spec("baseline", "tiny", scenes_root, duration="2ba"), save_folder=tmp_path, print_progress=False)
    assert again.resumed and again.run.history == first.run.history and again.miou == first.miou
    assert {path: path.stat().st_mtime_ns for path in first.folder.rglob("*") if path.is_file()} == written


def test_another_recipe_in_an_existing_run_folder_is_refused(tmp_path, scenes_root):
    first = train(run_spec("baseline", "tiny", scenes_root, duration="2ba"), save_folder=tmp_path, run_name="r",
                  print_progress=False)
    files = {p: p.read_bytes() for p in first.folder.rglob("*") if p.is_file()}
    with pytest.raises(RunError, match=r"holds a run with another recipe \('baseline'; this command asks "
                                       r"for 'mild': channels_last False -> True, .*name 'baseline' -> 'mild'\); "
                                       r"choose another --run-name"):
        train(run_spec("mild", "tiny", scenes_root, duration="2ba"), save_folder=tmp_path, run_name="r")
    assert {p: p.read_bytes() for p in first.folder.rglob("*") if p.is_file()} == files


def test_a_run_folder_written_before_the_architecture_was_recorded_still_resumes(tmp_path, scenes_root):
    first = train(run_spec("baseline", "tiny", scenes_root, duration="2ba"), save_folder=tmp_path, print_progress=False)
    metrics = first.folder / "metrics.json"
    older = json.loads(metrics.read_text())
    del older["profile"]["architecture"]
    older["data"].pop("format")
    metrics.write_text(json.dumps(older))
    again = train(run_spec("baseline", "tiny", scenes_root, duration="2ba"), save_folder=tmp_path, print_progress=False)
    assert again.resumed and again.run.history == first.run.history


def test_run_is_readable_as_data(tmp_path, scenes_root):
    result = train(run_spec("baseline", "tiny", scenes_root, duration="2ba"), save_folder=tmp_path,
                   print_progress=False)
    run = Run.load(result.folder)
    assert run.recipe == "baseline" and run.status == "finished"
    epochs, wall_times, values = run.series("miou")
    assert values == [result.miou] and wall_times[0] > 0
    assert comparison.cost_to_reach(run, 0.0) == wall_times[0] and comparison.cost_to_reach(run, 101.0) is None


@pytest.mark.parametrize("kwargs,message", [
    ({"profile": "tpu"}, r"unknown profile 'tpu'; choose one of a100, gpu, cpu, scratch, tiny"),
    ({"recipe": "spicy"}, r"unknown recipe 'spicy'"),
    ({"duration": "ten"}, r"duration 'ten' must be a positive number of batches or epochs"),
    ({"duration": "0ep"}, r"duration '0ep' must be"),
    ({"seed": -1}, r"seed must be an integer"),
    ({"run_name": "../escape"}, r"run name '../escape' must be"),
    ({"profile": "a100"}, r"profile 'a100' trains on CUDA GPUs and none is available"),
])
def test_bad_arguments(tmp_path, scenes_root, kwargs, message):
    if kwargs.get("profile") == "a100" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match=message):
        spec, options = train_options({"data": scenes_root, "profile": "tiny", "save_folder": tmp_path, **kwargs})
        train(run_spec(**spec), **options)
    assert not any(tmp_path.iterdir())  # nothing written


def test_raw_weights_are_evaluated_beside_the_ema(tmp_path, scenes_root):
    from segkit.data import ADE20k
    from segkit.inference import predict
    from segkit.metrics import confusion_matrix, mean_iou
    from segkit.transforms import eval_transform

    result = train(run_spec("mild", "tiny", scenes_root, duration="6ba"), save_folder=tmp_path, print_progress=False,
                   evaluate_raw_weights=True)
    last = result.run.history[-1]
    assert "miou_raw" in last and last["miou_raw"] != last["miou"]
    # The checkpoint holds the raw (trained) weights of the last evaluation: evaluate them by hand.
    state = checkpoints.safe_load(result.folder / "checkpoints" / "latest.pt")["state"]["model"]
    module = deeplabv3plus("resnet10", 16, 16, head_channels=16)
    module.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    module.eval()
    dataset = ADE20k(scenes_root, "validation", eval_transform(32))
    images, masks = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    confusion = confusion_matrix(predict(module, torch.stack(images)), torch.stack(masks), 16)
    assert last["miou_raw"] == pytest.approx(mean_iou(confusion), abs=1e-3)
    plain = train(run_spec("baseline", "tiny", scenes_root, duration="2ba"), save_folder=tmp_path,
                  print_progress=False, evaluate_raw_weights=True)
    assert "miou_raw" not in plain.run.history[-1]  # without EMA the evaluated weights are the raw ones
    # Measuring the raw weights changes nothing else: the same run without it has the same history.
    unmeasured = train(run_spec("mild", "tiny", scenes_root, duration="6ba"), save_folder=tmp_path,
                       run_name="unmeasured", print_progress=False)
    assert without_timing(unmeasured.run.history) == [
        {k: v for k, v in entry.items() if k != "miou_raw"} for entry in without_timing(result.run.history)]


def test_the_loss_falls(tmp_path, scenes_root):
    """16 steps of the baseline on the tiny profile take the training loss from the first step's to at
    most 0.9 of it (mean of the last 4 steps). Measured: 0.85 as the code stands; 1.01 with the learning
    rate at 1e-9 (an optimizer that does not step), so a broken optimizer or schedule fails here."""
    losses = []
    train(run_spec("baseline", "tiny", scenes_root, duration="16ba"), save_folder=tmp_path, print_progress=False,
          on_progress=lambda kind, data: losses.append(data["train_loss"]) if kind == "batch" else None)
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 <= 0.9 * losses[0]


def test_the_learning_rate_follows_the_cosine_schedule(tmp_path, scenes_root):
    from composer import Callback

    class LearningRates(Callback):
        rates: list = []

        def before_forward(self, state, logger):
            self.rates.append(state.optimizers[0].param_groups[0]["lr"])

    spy = LearningRates()
    train(run_spec("baseline", "tiny", scenes_root, duration="8ba"), save_folder=tmp_path, print_progress=False,
          callbacks=[spy])
    # Composer steps the schedule at the end of each batch with the count of batches before it, so batch
    # t trains at the rate of step t - 1 (and batch 0 at the rate of step 0): cosine to 0 over 8 steps.
    expected = [0.08 * (1 + math.cos(math.pi * max(0, step - 1) / 8)) / 2 for step in range(8)]
    assert spy.rates == pytest.approx(expected, rel=1e-6)
    constant = LearningRates()
    constant.rates = []
    train(run_spec("mild", "tiny", scenes_root, duration="4ba"), save_folder=tmp_path, print_progress=False,
          callbacks=[constant])
    assert constant.rates == pytest.approx([0.08] * 4)


def shrunken_a100(**changes):
    """The a100 profile at the tiny profile's size: its algorithms and batch split, at test scale."""
    import dataclasses



    return dataclasses.replace(get_profile("a100"), name="a100-small", image_size=32, backbone="resnet10",
                               head_channels=16, weights=None, global_batch_size=4, default_data="scenes",
                               scenes_train_images=8, scenes_val_images=4, num_workers=2, **changes)


def test_the_a100_path_on_the_cpu(tmp_path, scenes_root):
    """The reference profile's hot recipe, forced to the CPU (fp32, a fixed microbatch of 2 out of each
    batch of 4, two data workers): 2 steps, every algorithm on, SAM through microbatches."""
    profile = shrunken_a100(device="cpu", precision="fp32", microbatch_size=2)
    result = train(run_spec("hot", profile, scenes_root, duration="2ba"), save_folder=tmp_path, print_progress=False)
    assert result.run.status == "finished" and result.run.final["step"] == 2
    assert result.run.info["plan"]["sam_rho"] == 0.3 and result.run.info["world_size"] == 1
    assert result.run.info["batchnorm"] == "per process"  # a100 synchronizes BatchNorm only over several GPUs


def test_synchronized_batchnorm_on_cpu_processes_is_refused_before_a_run_folder(tmp_path, scenes_root, monkeypatch):
    """torch's SyncBatchNorm computes on GPUs only (on gloo CPU processes it raises mid-step): a CPU profile
    asking for it over two processes is one line before anything is written."""
    monkeypatch.setenv("WORLD_SIZE", "2")  # what Composer's launcher sets; the check comes before any rendezvous
    profile = shrunken_a100(device="cpu", precision="fp32", microbatch_size=2, sync_batchnorm=True)
    with pytest.raises(ConfigError, match=r"synchronizes BatchNorm, which runs on GPUs only; set its sync_batchnorm"):
        train(run_spec("baseline", profile, scenes_root, duration="1ba"), save_folder=tmp_path, print_progress=False)
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_compile_is_opt_in_and_trains_the_same_run(tmp_path, scenes_root):
    """``compile`` (a profile field) runs the network and the loss through torch.compile (Composer's
    compile_config, inductor): the same history as eager, to rounding. Slow: inductor compiles for about
    two minutes on 2 cores."""
    eager = train(run_spec("medium", "tiny", scenes_root, duration="2ba"), save_folder=tmp_path, run_name="eager",
                  print_progress=False)
    profile = dataclasses.replace(get_profile("tiny"), compile=True)
    compiled = train(run_spec("medium", profile, scenes_root, duration="2ba"), save_folder=tmp_path,
                     run_name="compiled", print_progress=False)
    assert compiled.run.info["profile"]["compile"] is True and eager.run.info["profile"]["compile"] is False
    for key in ("train_loss", "val_loss", "miou"):
        assert compiled.run.final[key] == pytest.approx(eager.run.final[key], rel=1e-3, abs=1e-3), key


@pytest.mark.gpu
def test_the_a100_path_on_a_gpu(tmp_path, scenes_root):
    """The same on a CUDA GPU: mixed precision and automatic microbatching (pytest -m gpu)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    profile = shrunken_a100(device="gpu", precision="amp_fp16", microbatch_size="auto")
    result = train(run_spec("hot", profile, scenes_root, duration="4ba"), save_folder=tmp_path, print_progress=False)
    assert result.run.final["step"] == 4 and math.isfinite(result.run.final["train_loss"])


@pytest.mark.slow
def test_two_processes_through_the_cli_launcher(tmp_path, scenes_root):
    """``segkit train --gpus 2`` on the CPU: Composer's launcher, two gloo processes, the batch of 4 split
    into 2 per process (8 images: 2 steps per epoch)."""
    done = run_segkit("train", "--profile", "tiny", "--data", str(scenes_root), "--gpus", "2", "--duration", "2ep",
                      "--save-folder", str(tmp_path), "--run-name", "ddp", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = Run.load(tmp_path / "ddp")
    assert run.info["world_size"] == 2 and [entry["step"] for entry in run.history] == [2, 4]


def test_a_microbatch_whose_logits_cuda_cannot_index_is_refused_before_the_run_folder(tmp_path, scenes_root):
    # 8 images x 16 classes x 4096^2 px = 2^31 elements, one more than CUDA's kernels index


    huge = dataclasses.replace(get_profile("tiny"), name="huge", image_size=4096, global_batch_size=8,
                               microbatch_size=8)
    with pytest.raises(ConfigError, match=r"^microbatch_size 8 makes logits of 8 x 16 classes x 4096\^2 px, .* use "
                                          r"4 or less, or 'auto'$"):
        train(run_spec("baseline", huge, scenes_root, duration="1ba"), save_folder=tmp_path, print_progress=False)
    assert not any(tmp_path.iterdir())


def test_a_lost_peer_is_told_apart_from_other_errors(monkeypatch):
    from segkit.engine import lost_peer_error

    monkeypatch.setenv("WORLD_SIZE", "2")
    gloo = lost_peer_error(RuntimeError("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection "
                                        "closed by peer [127.0.0.1]:46502"))
    assert str(gloo).startswith("lost contact with another process of this 2-process run (Connection closed by peer")
    assert lost_peer_error(torch.distributed.DistBackendError("communicator aborted")) is not None
    assert lost_peer_error(RuntimeError("CUDA out of memory")) is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert lost_peer_error(torch.distributed.DistBackendError("communicator aborted")) is None


def test_train_takes_a_run_spec_and_says_how_to_build_one(tmp_path):
    with pytest.raises(ConfigError, match=r"train takes a RunSpec, got 'mild'; build one with "
                                          r"segkit.run_spec\('mild', profile=..., data=...\)"):
        train("mild", save_folder=tmp_path)
    assert not any(tmp_path.iterdir())


def test_the_plan_a_run_trains_is_the_one_its_spec_computes_before_any_data_is_opened(tiny_run, scenes_root):
    """The engine scales the recipe at its loader's steps per epoch; the notebooks' tables use the spec's count."""
    import dataclasses

    from tests.conftest import tiny_run_spec

    assert tiny_run.run.info["plan"] == dataclasses.asdict(tiny_run_spec(scenes_root).scaled_recipe())

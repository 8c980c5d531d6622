"""RunSpec: the defaults, the run name, steps per epoch and the checks, in one place."""

from __future__ import annotations

import dataclasses

import pytest

from segkit import recipes
from segkit.errors import ConfigError
from segkit.profiles import get_profile
from segkit.spec import DEFAULT_SEED, Launch, RunSpec, launched, plan_launch, run_spec


def test_defaults_and_run_name():
    spec = run_spec("hot")
    assert (spec.profile.name, spec.data, spec.seed, spec.duration, spec.weights) == ("cpu", "scenes", 17, None, None)
    assert DEFAULT_SEED == 17 and spec.run_name == "hot-cpu-seed17"
    assert run_spec("baseline", "tiny", seed=3, duration="2ba").run_name == "baseline-tiny-seed3-2ba"


def test_an_edited_recipe_gets_a_digest_in_its_name():
    edited = dataclasses.replace(recipes.mild(), ema_half_life="2000ba")
    name = run_spec(edited, "tiny").run_name
    assert name.startswith("mild-") and name.endswith("-tiny-seed17") and name != "mild-tiny-seed17"
    assert name != run_spec(dataclasses.replace(recipes.mild(), ema_half_life="500ba"), "tiny").run_name


def test_steps_per_epoch_on_scenes_and_on_a_folder(ade_root):
    cpu = get_profile("cpu")
    assert run_spec("baseline", "cpu").steps_per_epoch() == cpu.scenes_train_images // cpu.global_batch_size
    # 4 training images in the fixture, batch 4 on tiny; over 2 processes: 2 images each, batch 2 each
    assert run_spec("baseline", "tiny", data=ade_root).steps_per_epoch() == 1
    assert run_spec("baseline", "tiny", data=ade_root).steps_per_epoch(world_size=2) == 1


def test_scaled_recipe_uses_the_specs_steps():
    spec = run_spec("mild", "cpu")
    assert spec.scaled_recipe() == recipes.scale(recipes.mild(), "cpu", steps_per_epoch=spec.steps_per_epoch())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"seed": -1}, "seed must be an integer"),
    ({"duration": "3 epochs"}, "duration '3 epochs' must be"),
    ({"duration": "0ba"}, "duration '0ba' must be"),
    ({"weights": "/no/such/file.pth"}, "weights '/no/such/file.pth' is not one of"),
    ({"profile": "a100"}, "profile 'a100' trains on ADE20k"),
    ({"profile": "nope"}, "unknown profile 'nope'"),
    ({"recipe": "nope"}, "unknown recipe 'nope'"),
])
def test_bad_specs_are_refused_with_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        run_spec(**kwargs)


def test_a_spec_is_frozen_and_checks_itself():
    spec = run_spec("baseline", "tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seed = 3
    with pytest.raises(ConfigError, match="profile 'a100' trains on ADE20k"):
        RunSpec(recipes.baseline(), get_profile("a100"))


def test_train_argv_and_launcher_command_round_trip():
    spec = run_spec("medium", "tiny", seed=5, duration="2ba", weights="none")
    argv = spec.train_argv("run-1", "runs", "recipe.yaml")
    assert argv == ["train", "--recipe", "recipe.yaml", "--profile", "tiny", "--data", "scenes", "--run-name",
                    "run-1", "--save-folder", "runs", "--seed", "5", "--duration", "2ba", "--weights", "none"]
    from segkit.cli import build_parser

    args = build_parser().parse_args(argv)
    assert (args.seed, args.duration, args.weights, args.gpus) == (5, "2ba", "none", None)
    assert Launch(gpus=2).command(argv)[2:] == ["composer.cli.launcher", "-n", "2", "--world_size", "2",
                                                "--node_rank", "0", "--base_rank", "0", "--master_addr",
                                                "127.0.0.1", "-m", "segkit", *argv]
    second_node = Launch(gpus=8, nodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29500)
    assert second_node.command(argv)[3:15] == ["-n", "8", "--world_size", "16", "--node_rank", "1", "--base_rank",
                                               "8", "--master_addr", "10.0.0.1", "--master_port", "29500"]


@pytest.mark.parametrize(("launch", "message"), [
    ({"gpus": 0}, "gpus must be at least 1, got 0"),
    ({"nodes": 2, "node_rank": 2, "master_port": 1}, r"node_rank must be in 0 .. 1 \(nodes is 2\), got 2"),
    ({"nodes": 2}, "more than one node needs master_addr and master_port"),
    ({"master_port": 70000}, "master_port must be a TCP port"),
])
def test_a_launch_is_checked(launch, message):
    with pytest.raises(ConfigError, match=message):
        Launch(**launch)


def test_the_launch_plan_defaults_and_refusals(monkeypatch):
    from segkit import devices

    assert plan_launch(get_profile("tiny")).world_size == 1  # the CPU: one process unless asked
    assert plan_launch(get_profile("tiny"), gpus=2).world_size == 2  # gloo processes, the CPU twin
    monkeypatch.setattr(devices, "visible_gpus", lambda: 0)
    with pytest.raises(ConfigError, match="profile 'a100' trains on CUDA GPUs and none is visible here"):
        plan_launch(get_profile("a100"))
    monkeypatch.setattr(devices, "visible_gpus", lambda: 6)
    with pytest.raises(ConfigError, match=r"profile 'a100': its global batch 128 does not split over 6 processes "
                                          r"\(1 node\(s\) x 6\); pass gpus 4"):
        plan_launch(get_profile("a100"))  # every visible GPU by default: 6
    assert plan_launch(get_profile("a100"), gpus=4).gpus == 4
    with pytest.raises(ConfigError, match="gpus is 8 but this machine has 6 visible CUDA GPU"):
        plan_launch(get_profile("a100"), gpus=8)


def test_only_a_launched_process_trains_in_place(monkeypatch):
    for name in ("LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "16")  # as a scheduler exports it for the whole job
    assert not launched()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert launched()

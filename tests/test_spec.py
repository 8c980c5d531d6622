"""RunSpec: the defaults, the run name, steps per epoch and the checks, in one place."""

from __future__ import annotations

import dataclasses

import pytest

from segkit import recipes
from segkit.errors import ConfigError
from segkit.profiles import get_profile
from segkit.spec import DEFAULT_SEED, RunSpec, launcher_command, run_spec


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
    argv = spec.train_argv("run-1", "runs", "recipe.yaml", gpus=2)
    assert argv == ["train", "--recipe", "recipe.yaml", "--profile", "tiny", "--data", "scenes", "--run-name",
                    "run-1", "--save-folder", "runs", "--seed", "5", "--gpus", "2", "--duration", "2ba",
                    "--weights", "none"]
    from segkit.cli import build_parser

    args = build_parser().parse_args(argv)
    assert (args.seed, args.duration, args.weights, args.gpus) == (5, "2ba", "none", 2)
    assert launcher_command(2, argv)[2:6] == ["composer.cli.launcher", "-n", "2", "-m"]

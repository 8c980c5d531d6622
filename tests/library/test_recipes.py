"""Recipes pinned against the reference, the scaling rule, and recipe files."""

from __future__ import annotations

import dataclasses

import pytest

from segkit import recipes
from segkit.errors import ConfigError
from segkit.profiles import get_profile
from segkit.recipes import REFERENCE_STEPS_PER_EPOCH, Recipe, scale

SHARED = {"lr": 0.08, "momentum": 0.9, "weight_decay": 5e-5, "global_batch_size": 128,
          "ce_weight": 0.375, "dice_weight": 1.125}

# Source: ../shared/reference/recipes.md sections 2 and 3 (mosaicml/examples deeplab main.py + yaml).
REFERENCE = {
    "baseline": {"epochs": 128, "lr_schedule": "cosine", "channels_last": False, "ema_half_life": None,
                 "sam_rho": None, "mixup_alpha": None},
    "mild": {"epochs": 25, "lr_schedule": "constant", "channels_last": True, "ema_half_life": "1000ba",
             "ema_update_interval": "10ba", "sam_rho": None, "mixup_alpha": None},
    "medium": {"epochs": 90, "lr_schedule": "constant", "channels_last": True, "ema_half_life": "1000ba",
               "ema_update_interval": "10ba", "sam_rho": 0.3, "sam_interval": 2, "mixup_alpha": 0.2},
    "hot": {"epochs": 240, "lr_schedule": "cosine", "channels_last": True, "ema_half_life": "2000ba",
            "ema_update_interval": "1ba", "sam_rho": 0.3, "sam_interval": 1, "mixup_alpha": 0.5},
}


@pytest.mark.parametrize("name", list(REFERENCE))
def test_full_profile_equals_reference(name):
    recipe = scale(recipes.get(name), "a100", REFERENCE_STEPS_PER_EPOCH)
    assert recipe == recipes.get(name)  # the scaling rule is the identity at the reference scale
    for field, value in {**SHARED, **REFERENCE[name]}.items():
        assert getattr(recipe, field) == value, field


@pytest.mark.parametrize("name", list(REFERENCE))
def test_full_profile_algorithms(name):
    from composer.algorithms import EMA, ChannelsLast

    from segkit.algorithms import SAM, SegmentationMixUp, build_algorithms

    expected = REFERENCE[name]
    algorithms = {type(a): a for a in build_algorithms(recipes.get(name))}
    assert (ChannelsLast in algorithms) == expected["channels_last"]
    if expected["ema_half_life"]:
        ema = algorithms[EMA]
        assert (str(ema.half_life), str(ema.update_interval)) == (expected["ema_half_life"],
                                                                   expected["ema_update_interval"])
    assert (SAM in algorithms) == (expected["sam_rho"] is not None)
    if SAM in algorithms:
        assert (algorithms[SAM].rho, algorithms[SAM].interval) == (0.3, expected["sam_interval"])
    assert (SegmentationMixUp in algorithms) == (expected["mixup_alpha"] is not None)
    if SegmentationMixUp in algorithms:
        assert algorithms[SegmentationMixUp].alpha == expected["mixup_alpha"]


def test_recipes_are_frozen_and_derived_with_replace():
    mild = recipes.mild()
    with pytest.raises(dataclasses.FrozenInstanceError):
        mild.epochs = 3
    variant = dataclasses.replace(mild, ema_half_life="2000ba")
    assert variant.ema_half_life == "2000ba" and recipes.mild().ema_half_life == "1000ba"


def test_unknown_recipe_lists_valid_names():
    with pytest.raises(ConfigError, match=r"unknown recipe 'spicy'; choose one of baseline, mild, medium, hot"):
        recipes.get("spicy")


def test_scaling_rule_on_cpu():
    steps = 25  # 200 built-in images / batch 8
    scaled = {name: scale(recipes.get(name), "cpu", steps) for name in REFERENCE}
    assert [scaled[n].epochs for n in REFERENCE] == [40, 8, 28, 75]  # 128 25 90 240 x 40/128, rounded
    assert all(r.global_batch_size == 8 for r in scaled.values())
    assert all(r.lr == 0.08 for r in scaled.values())  # the optimizer stays the reference's
    # EMA half-life keeps its share of training: 1000 of 20,096 reference baseline steps (4.98%).
    baseline_steps = scaled["baseline"].epochs * steps
    half_life = int(scaled["mild"].ema_half_life.removesuffix("ba"))
    assert half_life / baseline_steps == pytest.approx(1000 / (128 * REFERENCE_STEPS_PER_EPOCH), rel=0.05)
    assert scaled["hot"].ema_half_life == "100ba"  # 2000 ba -> twice mild's 50
    assert scaled["mild"].ema_update_interval == "1ba"  # 10 ba would scale below one batch
    # rho keeps its share of the weight norm; the other per-step settings are unchanged.
    assert scaled["medium"].sam_rho == pytest.approx(0.3 * get_profile("cpu").sam_rho_scale)
    assert (scaled["medium"].sam_interval, scaled["medium"].mixup_alpha) == (2, 0.2)


def test_sam_rho_scale_is_computed_from_the_weight_norms():
    from segkit.model import weight_norm
    from segkit.profiles import PROFILES, REFERENCE_WEIGHT_NORM

    assert weight_norm("resnet101", 150, 8, 512) == pytest.approx(REFERENCE_WEIGHT_NORM, abs=0.005)
    # the values these profiles had when they were pasted in by hand, and ran the recipe study with
    assert {name: get_profile(name).sam_rho_scale for name in ("cpu", "scratch", "tiny")} == {
        "cpu": 0.301, "scratch": 0.301, "tiny": 0.27}
    assert all(PROFILES[name].sam_rho_scale is None for name in ("cpu", "scratch", "tiny"))
    assert get_profile("a100").sam_rho_scale == get_profile("gpu").sam_rho_scale == 1.0
    wider = get_profile(dataclasses.replace(get_profile("tiny"), name="wider", head_channels=128,
                                            sam_rho_scale=None))
    assert wider.sam_rho_scale == 0.301  # a new head gets its own rho with no number pasted in


@pytest.mark.parametrize(("profile", "steps"), [("cpu", 25), ("scratch", 12), ("tiny", 4), ("a100", 157)])
def test_duration_ratios_survive_scaling(profile, steps):
    epochs = {name: scale(recipes.get(name), profile, steps).epochs for name in REFERENCE}
    assert epochs["medium"] < epochs["baseline"] < epochs["hot"]
    # tiny rounds mild's 0.4 and medium's 1.4 epochs both to 1; every other profile keeps them apart
    assert epochs["mild"] < epochs["medium"] or (profile == "tiny" and epochs["mild"] == epochs["medium"] == 1)
    if profile == "tiny":  # 2 baseline epochs: mild's 0.4 rounds up to 1, so ratios are not kept there
        return
    tolerance = 0.5 / epochs["baseline"] + 0.5 / epochs["mild"]  # rounding to whole epochs
    for name, reference in REFERENCE.items():
        assert epochs[name] / epochs["baseline"] == pytest.approx(reference["epochs"] / 128, rel=tolerance)


def test_changes_against_baseline():
    changes = recipes.hot().changes()
    assert changes["epochs"] == (128, 240)
    assert changes["mixup_alpha"] == (None, 0.5)
    assert "lr_schedule" not in changes  # hot keeps the cosine schedule


def test_yaml_round_trip(tmp_path):
    for name in REFERENCE:
        path = tmp_path / f"{name}.yaml"
        path.write_text(recipes.get(name).to_yaml())
        assert recipes.load(path) == recipes.get(name)


@pytest.mark.parametrize("text,message", [
    ("epochs: 10\nema_halflife: 1000ba\n", r"unknown field 'ema_halflife'; valid fields: .*ema_half_life"),
    ("epochs: 10\nsam_rho: high\n", r"field 'sam_rho' must be a number in \(0, 10\], or null for no SAM, got 'high'"),
    ("epochs: -3\n", r"field 'epochs' must be a positive integer, got -3"),
    ("epochs: 10\nlr_schedule: linear\n", r"field 'lr_schedule' must be 'cosine' or 'constant'"),
    ("epochs: 10\nema_half_life: 1000\n", r"field 'ema_half_life' must be a duration like '1000ba'"),
    ("epochs: 10\nchannels_last: yes please\n", r"field 'channels_last' must be true or false"),
    ("lr: 0.1\n", r"field 'epochs' is required"),
    ("- epochs\n", r"must be a mapping of recipe fields"),
    ("epochs: [1\n", r"is not valid YAML"),
])
def test_bad_recipe_file_names_the_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"recipe file .*bad.yaml.*{message}"):
        recipes.load(path)


def test_bad_values_in_code_name_the_field():
    with pytest.raises(ConfigError, match=r"field 'mixup_alpha' must be a number in \(0, 100\]"):
        Recipe(name="x", epochs=3, mixup_alpha=-1.0)
    with pytest.raises(ConfigError, match=r"field 'momentum' must be a number in \[0, 1\)"):
        dataclasses.replace(recipes.baseline(), momentum=1.5)


def test_every_recipe_field_and_switch_is_described_once():
    """The lab, its widgets and the tables read one description per field (recipes.FIELDS, SWITCHES)."""
    from dataclasses import fields as dataclass_fields

    from segkit.teaching.recipe_editor import FIRST_SETTINGS
    from segkit.teaching.tables import FIELD_LABELS
    from segkit.teaching.widgets import EDITABLE, RecipePicker

    described = set(recipes.FIELDS)
    assert described == {f.name for f in dataclass_fields(recipes.Recipe)} - {"name"}
    for switch in recipes.SWITCHES.values():
        assert set(switch.fields) <= described and set(switch.first_settings()) >= set(switch.fields)
        assert getattr(recipes.baseline(), switch.fields[0]) == switch.off or switch.introduced_by == "baseline"
    assert {name: info.label for name, info in recipes.FIELDS.items()} == FIELD_LABELS
    assert set(FIRST_SETTINGS) == {name for switch in recipes.SWITCHES.values()
                                   for name in (*switch.fields, *switch.off_settings)}
    picker = RecipePicker("baseline")
    assert set(picker.fields) == set(EDITABLE) and set(picker.switches) == set(recipes.SWITCHES)
    assert {box.description for box in picker.fields.values() if box.description} <= set(FIELD_LABELS.values())

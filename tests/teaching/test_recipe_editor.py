"""The recipe picker's logic: switches, remembered settings, validation, the table."""

from __future__ import annotations

import dataclasses

import pytest

from segkit import recipes
from segkit.errors import ConfigError
from segkit.teaching.recipe_editor import RecipeEditor


@pytest.mark.parametrize("name", list(recipes.RECIPES))
def test_starting_from_a_recipe_gives_it_back_unchanged(name):
    editor = RecipeEditor(name)
    assert editor.recipe == recipes.get(name)
    assert editor.changes() == recipes.get(name).changes()


def test_switches_reflect_the_recipe():
    assert RecipeEditor("baseline").switches == {"ema": False, "sam": False, "mixup": False, "dice": True}
    assert RecipeEditor("hot").switches == {"ema": True, "sam": True, "mixup": True, "dice": True}


def test_switching_on_takes_the_reference_settings_and_off_again_gives_the_start_back():
    editor = RecipeEditor("baseline")
    editor.set("sam", True)
    assert (editor.recipe.sam_rho, editor.recipe.sam_interval, editor.recipe.name) == (0.3, 2, "custom")
    assert set(editor.changes()) == {"name", "sam_rho", "sam_interval"}
    editor.set("sam", False)
    assert editor.recipe == recipes.baseline() and editor.changes() == {}


def test_switching_off_and_on_remembers_edited_settings():
    editor = RecipeEditor("hot")
    editor.set("mixup_alpha", 0.7)
    editor.set("mixup", False)
    assert editor.recipe.mixup_alpha is None and not editor.active("mixup_alpha")
    assert editor.value("mixup_alpha") == 0.7
    editor.set("mixup", True)
    assert editor.recipe == dataclasses.replace(recipes.hot(), name="custom", mixup_alpha=0.7)


def test_dice_off_is_cross_entropy_alone_at_full_weight():
    editor = RecipeEditor("mild")
    editor.set("dice", False)
    assert editor.recipe.dice_weight == 0 and editor.recipe.ce_weight == 1.0
    editor.set("dice", True)  # back to the reference's mix
    assert editor.recipe == recipes.mild()
    ce_only = RecipeEditor(dataclasses.replace(recipes.baseline(), ce_weight=1.0, dice_weight=0.0))
    assert not ce_only.switches["dice"] and ce_only.recipe.name == "baseline"
    ce_only.set("dice", True)
    assert ce_only.recipe == dataclasses.replace(recipes.baseline(), name="custom")


def test_plain_fields_and_schedule():
    editor = RecipeEditor("mild")
    editor.set("lr_schedule", "cosine")
    editor.set("channels_last", False)
    editor.set("epochs", 50)
    recipe = editor.recipe
    assert (recipe.lr_schedule, recipe.channels_last, recipe.epochs) == ("cosine", False, 50)


def test_an_invalid_setting_is_reported_not_raised_until_asked():
    editor = RecipeEditor("mild")
    editor.set("ema_half_life", "soon")
    assert editor.error == ("field 'ema_half_life' must be a duration like '1000ba' or '5ep', or null for no "
                            "EMA, got 'soon'")
    assert editor.changes() == {}
    with pytest.raises(ConfigError, match="ema_half_life"):
        _ = editor.recipe
    editor.set("ema", False)  # the bad value no longer matters
    assert editor.error is None


def test_unknown_settings_and_bad_switch_values():
    editor = RecipeEditor()
    with pytest.raises(ConfigError, match="unknown recipe setting 'warmup'; choose one of ema, sam, mixup"):
        editor.set("warmup", 3)
    with pytest.raises(ConfigError, match="switch 'ema' must be True or False"):
        editor.set("ema", "yes")
    with pytest.raises(ConfigError, match="unknown recipe 'spicy'"):
        RecipeEditor("spicy")


def test_reset_and_table():
    editor = RecipeEditor("medium")
    editor.set("sam", False)
    editor.reset()
    assert editor.recipe == recipes.medium()
    editor.reset("hot")
    table = editor.table(profile="cpu", steps_per_epoch=25)
    assert table.columns == ["setting", "baseline", "hot", "hot on cpu"]
    epochs = next(row for row in table.rows if row[0] == "epochs")
    assert epochs == ["epochs", "128", "240", "75"]

"""A recipe being edited: switch algorithms on and off, change their settings, get a ``Recipe``.

This is the logic of the recipe picker (``segkit.teaching.widgets.RecipePicker`` only wires widgets to
it), so it is plain Python and tested without a browser. Switching an algorithm off and on again
brings back the settings it had; switched on for the first time, it takes the reference's
settings (EMA as in mild, SAM as in medium, MixUp alpha 0.2, Dice weight 1.125).

Example:
    >>> editor = RecipeEditor("baseline")
    >>> editor.set("ema", True)
    >>> editor.set("ema_half_life", "2000ba")
    >>> editor.recipe.ema_half_life, editor.recipe.name
    ('2000ba', 'custom')
    >>> sorted(editor.changes())
    ['ema_half_life', 'ema_update_interval', 'name']
"""

from __future__ import annotations

import dataclasses
from dataclasses import fields
from typing import Any

from segkit import recipes
from segkit.errors import ConfigError
from segkit.profiles import Profile
from segkit.recipes import Recipe
from segkit.teaching.tables import Table, recipe_table

#: Each switch: the fields it owns, and the value its first field takes when it is off (``recipes.SWITCHES``).
SWITCHES: dict[str, tuple[tuple[str, ...], Any]] = {
    name: (switch.fields, switch.off) for name, switch in recipes.SWITCHES.items()}
#: Settings an algorithm takes when switched on for the first time: the reference recipe's that
#: introduces it (EMA from mild, SAM and MixUp from medium, Dice and the CE weight from the baseline), or
#: the switch's own (``recipes.Switch.first_settings``).
FIRST_SETTINGS = {name: value for switch in recipes.SWITCHES.values()
                  for name, value in switch.first_settings().items()}
#: The fields a learner can edit (all but the name).
FIELDS = tuple(f.name for f in fields(Recipe) if f.name != "name")
_DEFAULTS = {f.name: f.default for f in fields(Recipe)}


class RecipeEditor:
    """Edits a recipe through switches (``ema``, ``sam``, ``mixup``, ``dice``) and field values.

    Args:
        start: the recipe (or its name) the editor starts from; ``reset`` goes back to it.
    """

    def __init__(self, start: Recipe | str = "baseline"):
        self.reset(start)

    def reset(self, start: Recipe | str | None = None) -> None:
        """Start again from ``start`` (default: the current starting recipe)."""
        if start is not None:
            self.start = start if isinstance(start, Recipe) else recipes.get(start)
        self._values = {name: getattr(self.start, name) for name in FIELDS}
        self._on = {}
        for switch, (owned, off) in SWITCHES.items():
            self._on[switch] = self._values[owned[0]] != off
            if not self._on[switch]:  # the settings it takes when switched on
                self._values.update({name: FIRST_SETTINGS[name]
                                     for name in (*owned, *recipes.SWITCHES[switch].off_settings)})

    @property
    def switches(self) -> dict[str, bool]:
        """Which algorithms are on."""
        return dict(self._on)

    def active(self, name: str) -> bool:
        """Whether field ``name`` takes effect (its algorithm, if any, is on)."""
        return next((self._on[switch] for switch, (owned, _) in SWITCHES.items() if name in owned), True)

    def set(self, name: str, value: Any) -> None:
        """Switch an algorithm on or off (``"ema"``, ...) or set a field (``"sam_rho"``, ...)."""
        if name in SWITCHES:
            if not isinstance(value, bool):
                raise ConfigError(f"switch {name!r} must be True or False, got {value!r}")
            self._on[name] = value
        elif name in FIELDS:
            self._values[name] = value
        else:
            raise ConfigError(f"unknown recipe setting {name!r}; choose one of "
                              f"{', '.join([*SWITCHES, *FIELDS])}")

    def value(self, name: str) -> Any:
        """The value a field has in the editor (also while its algorithm is off)."""
        return self._values[name]

    @property
    def values(self) -> dict[str, Any]:
        """The recipe's field values as they are now: a switched-off algorithm's first field is None
        (Dice: 0, and cross-entropy at weight 1) and its other fields take ``Recipe``'s defaults, so they
        compare equal to the baseline."""
        values = dict(self._values)
        for switch, (owned, off) in SWITCHES.items():
            if not self._on[switch]:
                values.update({name: _DEFAULTS[name] for name in owned[1:]}, **{owned[0]: off},
                              **recipes.SWITCHES[switch].off_settings)
        return values

    @property
    def recipe(self) -> Recipe:
        """The edited recipe, named like the start when nothing changed, else ``custom``.

        Raises:
            ConfigError: a setting is invalid (the message names it).
        """
        edited = Recipe(name=self.start.name, **self.values)
        return edited if edited == self.start else dataclasses.replace(edited, name="custom")

    @property
    def error(self) -> str | None:
        """Why the current settings are not a valid recipe, or None."""
        try:
            Recipe(name=self.start.name, **self.values)
        except ConfigError as error:
            return str(error)
        return None

    def changes(self) -> dict[str, tuple[Any, Any]]:
        """What differs from the baseline: ``{field: (baseline's, edited)}``; empty while invalid."""
        return {} if self.error else self.recipe.changes()

    def table(self, profile: str | Profile | None = None, steps_per_epoch: int | None = None) -> Table:
        """The edited recipe against the baseline (see ``segkit.teaching.tables.recipe_table``)."""
        return recipe_table(self.recipe, profile, steps_per_epoch)

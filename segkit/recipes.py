"""MosaicML's segmentation recipes as plain data, and the one rule that scales them to a profile.

Each recipe is a function returning a frozen ``Recipe`` at the reference scale (ADE20k, 8xA100,
global batch 128, 157 steps per epoch); ``RECIPES`` maps names to them. A variant is
``dataclasses.replace(mild(), ema_half_life="2000ba")``. Values and sources: docs/recipes.md.

Scaling (``scale``) maps a recipe onto a smaller profile so that its intent survives:
    - every duration shrinks by the profile's ``epoch_scale``: the epoch *ratios* between recipes
      (128 : 25 : 90 : 240) stay, as does the cosine schedule's shape over the run;
    - the EMA half-life and update interval, given in batches, keep their fraction of training:
      they are converted to reference epochs (157 batches each), scaled, and converted back with
      the profile's own steps per epoch (at least one batch);
    - SAM's interval and MixUp's alpha are per-step quantities and stay as they are;
    - SAM's rho is a distance in weight space: it keeps its share of the model's weight norm, so it
      is multiplied by the profile's ``sam_rho_scale`` (the profile model's weight norm at
      initialization over the reference model's, ``segkit.model.weight_norm``; 0.3 on ``cpu``);
    - the batch becomes the profile's; the optimizer (lr 0.08, momentum, weight decay) stays.
At the reference profile (``a100`` on ADE20k) the rule is the identity.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from segkit.errors import ConfigError
from segkit.profiles import Profile, get_profile

#: Steps per epoch of the reference: 20,206 images (ADE20k's 20,210 less the 4 grayscale ones MosaicML's
#: loader drops), batch 128, last partial batch dropped.
REFERENCE_STEPS_PER_EPOCH = 157
_TIME = re.compile(r"^(\d+)(ba|ep)$")


@dataclass(frozen=True)
class Recipe:
    """What a training run does, at the reference scale. Every field is a hyperparameter."""

    name: str  # a label for runs and plots
    epochs: int  # training length in epochs (reference scale: ADE20k, batch 128)
    lr_schedule: str = "cosine"  # "cosine" (to 0 over the run, stepped per batch) or "constant"
    lr: float = 0.08  # DecoupledSGDW learning rate
    momentum: float = 0.9  # SGD momentum (no dampening, no Nesterov)
    weight_decay: float = 5e-5  # decoupled: each step p *= 1 - weight_decay * lr / initial_lr
    global_batch_size: int = 128  # images per step over all GPUs
    ce_weight: float = 0.375  # weight of the cross-entropy term
    dice_weight: float = 1.125  # weight of the Dice term (0 turns it off)
    channels_last: bool = False  # NHWC memory format (a GPU tensor-core speedup)
    ema_half_life: str | None = None  # EMA of the weights, e.g. "1000ba"; None = no EMA
    ema_update_interval: str = "1ba"  # how often the EMA is updated (smoothing adjusts to it)
    sam_rho: float | None = None  # sharpness-aware minimization radius; None = no SAM
    sam_interval: int = 1  # SAM on every n-th step (the others are plain steps)
    mixup_alpha: float | None = None  # MixUp's Beta(alpha, alpha); None = no MixUp

    def __post_init__(self) -> None:
        check(self)

    def changes(self, against: Recipe | None = None) -> dict[str, tuple[Any, Any]]:
        """Fields that differ from ``against`` (the baseline by default): ``{field: (theirs, ours)}``.

        Example:
            >>> sorted(mild().changes())
            ['channels_last', 'ema_half_life', 'ema_update_interval', 'epochs', 'lr_schedule', 'name']
        """
        against = against if against is not None else baseline()
        return {f.name: (getattr(against, f.name), getattr(self, f.name)) for f in fields(self)
                if getattr(against, f.name) != getattr(self, f.name)}

    def to_yaml(self) -> str:
        """The recipe as YAML, one field per line, readable by ``from_yaml``."""
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)


# The reference recipes. Each returns a new frozen Recipe; change one with dataclasses.replace.

def baseline() -> Recipe:
    """The optimized baseline: 128 epochs, cosine LR, CE + Dice. 45.33 mIoU in 3.5 h."""
    return Recipe(name="baseline", epochs=128, lr_schedule="cosine")


def mild() -> Recipe:
    """Fastest to baseline quality: EMA + channels-last, 25 epochs, constant LR. 45.48 mIoU in 39 min."""
    return Recipe(name="mild", epochs=25, lr_schedule="constant", channels_last=True,
                  ema_half_life="1000ba", ema_update_interval="10ba")


def medium() -> Recipe:
    """Best quality at baseline cost: mild + SAM + MixUp, 90 epochs. 49.32 mIoU in 3.55 h."""
    return dataclasses.replace(mild(), name="medium", epochs=90, sam_rho=0.3, sam_interval=2, mixup_alpha=0.2)


def hot() -> Recipe:
    """Best quality: longer EMA, SAM every step, stronger MixUp, 240 epochs, cosine. 49.91 mIoU in 13.5 h."""
    return Recipe(name="hot", epochs=240, lr_schedule="cosine", channels_last=True,
                  ema_half_life="2000ba", ema_update_interval="1ba",
                  sam_rho=0.3, sam_interval=1, mixup_alpha=0.5)


RECIPES = {"baseline": baseline, "mild": mild, "medium": medium, "hot": hot}


# How each field and each algorithm switch is shown and edited: read by the recipe lab (the editor and
# its widgets) and the tables. A new Recipe field needs an entry here (a test checks every field has one);
# a new algorithm is a field (or a few), its check in ``check``, a Switch, and where it acts: the loss
# (``segkit.losses.loss_for``) or a Composer algorithm (``segkit.algorithms.build_algorithms``).
# docs/architecture.md walks through one.

@dataclass(frozen=True)
class FieldInfo:
    """How one ``Recipe`` field is named and edited."""

    label: str  # its name in tables and in the recipe lab
    control: str  # the lab's input: "int", "float", "duration" (e.g. 1000ba), "toggle", "choice" or "fixed"
    step: float = 0.0  # the step of a "float" input
    choices: tuple[str, ...] = ()  # the options of a "choice" input


@dataclass(frozen=True)
class Switch:
    """An algorithm the lab turns on and off: the fields it owns, their "off" value, and the settings it
    takes when first switched on: a reference recipe's (``introduced_by``), or its own (``on_settings``)."""

    label: str  # the switch's label in the lab
    fields: tuple[str, ...]  # the fields it owns; the first one turns it off
    off: Any  # the first field's value when the algorithm is off (tables show it as "off")
    introduced_by: str | None = None  # the reference recipe whose settings it takes when first switched on
    on_settings: dict[str, Any] = dataclasses.field(default_factory=dict)  # else these: every field it owns
    # other fields' values while it is off, their introducing recipe's when on
    off_settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def first_settings(self) -> dict[str, Any]:
        """The values of its fields (and of ``off_settings``' fields) when it is first switched on."""
        names = (*self.fields, *self.off_settings)
        if self.introduced_by is not None:
            return {name: getattr(get(self.introduced_by), name) for name in names}
        return {name: self.on_settings[name] for name in names}


FIELDS: dict[str, FieldInfo] = {
    "epochs": FieldInfo("epochs", "int"),
    "lr_schedule": FieldInfo("learning-rate schedule", "choice", choices=("cosine", "constant")),
    "lr": FieldInfo("learning rate", "float", step=0.01),
    "momentum": FieldInfo("momentum", "fixed"),
    "weight_decay": FieldInfo("weight decay (decoupled)", "fixed"),
    "global_batch_size": FieldInfo("batch size (over all GPUs)", "fixed"),
    "ce_weight": FieldInfo("cross-entropy weight", "fixed"),
    "dice_weight": FieldInfo("Dice weight", "float", step=0.125),
    "channels_last": FieldInfo("channels-last memory format", "toggle"),
    "ema_half_life": FieldInfo("EMA of the weights: half-life", "duration"),
    "ema_update_interval": FieldInfo("EMA: update every", "duration"),
    "sam_rho": FieldInfo("SAM: radius rho", "float", step=0.05),
    "sam_interval": FieldInfo("SAM: every n-th step", "int"),
    "mixup_alpha": FieldInfo("MixUp: alpha", "float", step=0.1),
}
SWITCHES: dict[str, Switch] = {
    "ema": Switch("EMA of the weights", ("ema_half_life", "ema_update_interval"), None, "mild"),
    "sam": Switch("SAM", ("sam_rho", "sam_interval"), None, "medium"),
    "mixup": Switch("MixUp", ("mixup_alpha",), None, "medium"),
    # Off, the loss is cross-entropy alone at full weight: the baseline as the article's 45.33 was apparently
    # trained (0.375 x CE alone would be CE with the learning rate cut to 0.375 of the reference's)
    "dice": Switch("Dice loss term", ("dice_weight",), 0.0, "baseline", off_settings={"ce_weight": 1.0}),
}
#: The fields a run's name has always covered (``run_name_settings``): every field Recipe had when run names
#: were first given out. Never add to it: a field added later is named only when set away from its default.
NAMED_FIELDS = ("name", "epochs", "lr_schedule", "lr", "momentum", "weight_decay", "global_batch_size",
                "ce_weight", "dice_weight", "channels_last", "ema_half_life", "ema_update_interval", "sam_rho",
                "sam_interval", "mixup_alpha")


def run_name_settings(recipe: Recipe) -> str:
    """The settings a run's name is made from (``segkit.spec.RunSpec.run_name`` digests them), as YAML.

    A field added to ``Recipe`` joins them only when set away from its default, so adding one renames no run
    folder: an older edited recipe's run keeps its name, and resumes.

    Example:
        >>> run_name_settings(baseline()) == baseline().to_yaml()
        True
    """
    defaults = {f.name: f.default for f in fields(Recipe)}
    values = {name: value for name, value in dataclasses.asdict(recipe).items()
              if name in NAMED_FIELDS or value != defaults[name]}
    return yaml.safe_dump(values, sort_keys=False)


def get(name: str) -> Recipe:
    """The recipe called ``name``.

    Example:
        >>> get("medium").sam_rho
        0.3
    """
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)} or a .yaml file")
    return RECIPES[name]()


def load(name_or_path: str | Path) -> Recipe:
    """A recipe by name, or read from a YAML file (``segkit recipes NAME --yaml`` writes one)."""
    path = Path(name_or_path)
    if str(name_or_path) in RECIPES or path.suffix.lower() not in (".yaml", ".yml"):
        return get(str(name_or_path))
    if not path.is_file():
        raise ConfigError(f"recipe file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"recipe file {path} is not UTF-8 text (byte {error.object[error.start]:#04x} at "
                          f"offset {error.start}); save it as UTF-8") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"recipe file {path} is not valid YAML ({str(error).splitlines()[0]})") from None
    return from_dict(values, source=f"recipe file {path}")


def from_dict(values: Any, source: str = "recipe") -> Recipe:
    """Build a recipe from a mapping of field values, naming any bad field."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source} must be a mapping of recipe fields, got {type(values).__name__}")
    known = {f.name for f in fields(Recipe)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown field {unknown[0]!r}; valid fields: {', '.join(sorted(known))}")
    if "epochs" not in values:
        raise ConfigError(f"{source}: field 'epochs' is required")
    try:
        return Recipe(**{"name": "custom", **values})
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def check(recipe: Recipe) -> None:
    """Validate every field's type and range; raise ``ConfigError`` naming the first bad one."""

    def fail(field: str, expected: str) -> None:
        raise ConfigError(f"field {field!r} must be {expected}, got {getattr(recipe, field)!r}")

    def is_number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if not isinstance(recipe.name, str) or not recipe.name:
        fail("name", "a non-empty string")
    if not isinstance(recipe.epochs, int) or isinstance(recipe.epochs, bool) or recipe.epochs < 1:
        fail("epochs", "a positive integer")
    if recipe.lr_schedule not in ("cosine", "constant"):
        fail("lr_schedule", "'cosine' or 'constant'")
    if not is_number(recipe.lr) or not 0 < recipe.lr <= 10:
        fail("lr", "a number in (0, 10]")
    if not is_number(recipe.momentum) or not 0 <= recipe.momentum < 1:
        fail("momentum", "a number in [0, 1)")
    if not is_number(recipe.weight_decay) or not 0 <= recipe.weight_decay < 1:
        fail("weight_decay", "a number in [0, 1)")
    if not isinstance(recipe.global_batch_size, int) or isinstance(recipe.global_batch_size, bool) \
            or recipe.global_batch_size < 1:
        fail("global_batch_size", "a positive integer")
    for field in ("ce_weight", "dice_weight"):
        if not is_number(getattr(recipe, field)) or getattr(recipe, field) < 0:
            fail(field, "a non-negative number")
    if recipe.ce_weight == 0 and recipe.dice_weight == 0:
        fail("dice_weight", "positive when ce_weight is 0 (the loss would be zero)")
    if not isinstance(recipe.channels_last, bool):
        fail("channels_last", "true or false")
    if recipe.ema_half_life is not None and not _is_positive_time(recipe.ema_half_life):
        fail("ema_half_life", "a duration like '1000ba' or '5ep', or null for no EMA")
    if not _is_positive_time(recipe.ema_update_interval):
        fail("ema_update_interval", "a duration like '10ba' or '1ep'")
    if recipe.sam_rho is not None and (not is_number(recipe.sam_rho) or not 0 < recipe.sam_rho <= 10):
        fail("sam_rho", "a number in (0, 10], or null for no SAM")
    if not isinstance(recipe.sam_interval, int) or isinstance(recipe.sam_interval, bool) or recipe.sam_interval < 1:
        fail("sam_interval", "a positive integer")
    if recipe.mixup_alpha is not None and (not is_number(recipe.mixup_alpha) or not 0 < recipe.mixup_alpha <= 100):
        fail("mixup_alpha", "a number in (0, 100], or null for no MixUp")


def _is_positive_time(value: Any) -> bool:
    match = _TIME.match(value) if isinstance(value, str) else None
    return bool(match) and int(match.group(1)) > 0


def to_batches(duration: str, steps_per_epoch: int) -> float:
    """A ``"Nba"`` or ``"Nep"`` string in batches."""
    count, unit = _TIME.match(duration).groups()
    return int(count) * (steps_per_epoch if unit == "ep" else 1)


def scale(recipe: Recipe, profile: str | Profile, steps_per_epoch: int = REFERENCE_STEPS_PER_EPOCH) -> Recipe:
    """The recipe as it runs on ``profile``, with durations in that profile's units.

    Args:
        recipe: a recipe at the reference scale.
        profile: a profile (or its name); its ``epoch_scale`` and batch size apply.
        steps_per_epoch: optimizer steps per epoch on the data being trained on.

    Returns:
        A new ``Recipe``: epochs scaled and rounded (at least 1), EMA half-life and update
        interval in batches keeping their share of training, SAM's rho keeping its share of the
        weight norm, batch size the profile's.

    Example:
        >>> scale(mild(), "a100") == mild()
        True
        >>> cpu = scale(mild(), "cpu", steps_per_epoch=25)
        >>> cpu.epochs, cpu.ema_half_life, cpu.ema_update_interval
        (8, '50ba', '1ba')
    """
    profile = get_profile(profile)

    def scaled_batches(duration: str) -> str:
        reference_epochs = to_batches(duration, REFERENCE_STEPS_PER_EPOCH) / REFERENCE_STEPS_PER_EPOCH
        return f"{max(1, round(reference_epochs * profile.epoch_scale * steps_per_epoch))}ba"

    return dataclasses.replace(
        recipe,
        epochs=max(1, round(recipe.epochs * profile.epoch_scale)),
        global_batch_size=profile.global_batch_size,
        ema_half_life=None if recipe.ema_half_life is None else scaled_batches(recipe.ema_half_life),
        ema_update_interval=scaled_batches(recipe.ema_update_interval),
        sam_rho=None if recipe.sam_rho is None else round(recipe.sam_rho * profile.sam_rho_scale, 4),
    )

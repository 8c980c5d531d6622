"""Tables for notebooks, widgets and the summary page: a recipe against the baseline, and results
against the baseline run and the reference's published numbers.

Each function returns a ``Table``: rows of plain values (what the tests check) that shows as
HTML in a notebook (``_repr_html_``) and as text elsewhere.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from segkit import recipes
from segkit.profiles import Profile, get_profile
from segkit.recipes import Recipe
from segkit.runs import Run
from segkit.teaching import comparison
from segkit.teaching.comparison import CLAIMS, PUBLISHED

#: What each recipe field means, in a learner's words.
FIELD_LABELS = {name: info.label for name, info in recipes.FIELDS.items()}
#: Fields that only matter when another one switches their algorithm on.
DEPENDS_ON = {name: switch.fields[0] for switch in recipes.SWITCHES.values() for name in switch.fields[1:]}
#: The value that shows a switch's first field as "off" (None always does).
OFF_VALUES = {switch.fields[0]: switch.off for switch in recipes.SWITCHES.values()}


@dataclass(repr=False)
class Table:
    """A small table: column names, rows of values, and notes shown under it.

    It shows as HTML in a notebook and as aligned text elsewhere (``str`` and ``repr``).
    """

    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""
    notes: list[str] = field(default_factory=list)
    highlight: list[bool] = field(default_factory=list)  # rows shown in bold

    def column(self, name: str) -> list[Any]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def to_html(self) -> str:
        head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in self.columns)
        body = []
        for index, row in enumerate(self.rows):
            weight = "font-weight:bold;" if index < len(self.highlight) and self.highlight[index] else ""
            cells = "".join(f"<td style='text-align:left;{weight}'>{html.escape(text(v))}</td>" for v in row)
            body.append(f"<tr>{cells}</tr>")
        caption = (f"<caption style='text-align:left'>{html.escape(self.caption)}</caption>"
                   if self.caption else "")
        notes = "".join(f"<p>{html.escape(note)}</p>" for note in self.notes)
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{notes}"

    def _repr_html_(self) -> str:
        return self.to_html()

    def __str__(self) -> str:
        lines = [self.caption] if self.caption else []
        widths = [max(len(text(v)) for v in column) for column in zip(self.columns, *self.rows, strict=True)]
        for row in [self.columns, *self.rows]:
            lines.append("  ".join(text(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        return "\n".join(lines + self.notes)

    __repr__ = __str__


def text(value: Any) -> str:
    """A cell value as text: None as '-', floats with two decimals."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.2f}"
    return str(value)


def setting(recipe: Recipe, name: str) -> str:
    """A recipe field as shown to a learner: 'off' for a switched-off algorithm, '-' where unused.

    Example:
        >>> setting(recipes.baseline(), "ema_half_life"), setting(recipes.baseline(), "ema_update_interval")
        ('off', '-')
        >>> setting(recipes.mild(), "channels_last"), setting(recipes.baseline(), "dice_weight")
        ('yes', '1.125')
    """
    value = getattr(recipe, name)
    if name in DEPENDS_ON and getattr(recipe, DEPENDS_ON[name]) is None:
        return "-"
    if value is None or (name in OFF_VALUES and value == OFF_VALUES[name]):
        return "off"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def recipe_table(recipe: Recipe, profile: str | Profile | None = None, steps_per_epoch: int | None = None,
                 changes_only: bool = False) -> Table:
    """The recipe next to the baseline, changed settings in bold.

    Args:
        recipe: a recipe at the reference scale.
        profile: also show the recipe as it runs on this profile (``segkit.recipes.scale``).
        steps_per_epoch: the profile's steps per epoch on its data (needed with ``profile``).
        changes_only: list only the settings that differ from the baseline.
    """
    baseline = recipes.baseline()
    columns = ["setting", "baseline", recipe.name]
    scaled = None
    if profile is not None:
        profile = get_profile(profile)
        scaled = recipes.scale(recipe, profile, steps_per_epoch or recipes.REFERENCE_STEPS_PER_EPOCH)
        columns.append(f"{recipe.name} on {profile.name}")
    rows, highlight = [], []
    for name in (f.name for f in fields(Recipe) if f.name != "name"):
        changed = setting(recipe, name) != setting(baseline, name)
        if changes_only and not changed:
            continue
        row = [FIELD_LABELS[name], setting(baseline, name), setting(recipe, name)]
        if scaled is not None:
            row.append(setting(scaled, name))
        rows.append(row)
        highlight.append(changed)
    notes = []
    if changes_only:
        notes.append("All other settings are the baseline's: " + ", ".join(
            f"{FIELD_LABELS[name]} {setting(baseline, name)}" for name in ("lr", "momentum", "weight_decay")
            if setting(recipe, name) == setting(baseline, name)) + ".")
    if scaled is not None and profile.epoch_scale != 1:
        notes.append(f"On {profile.name}, durations shrink by {profile.epoch_scale:g} and the EMA keeps its "
                     f"share of training (segkit.recipes.scale).")
    return Table(columns, rows, caption=f"{recipe.name} against the baseline", notes=notes,
                 highlight=highlight)


def duration_text(seconds: float | None) -> str:
    """Seconds as '45 s', '3.2 min' or '3.55 h'.

    Example:
        >>> duration_text(45.2), duration_text(192), duration_text(3.55 * 3600)
        ('45 s', '3.2 min', '3.55 h')
    """
    if seconds is None or math.isnan(seconds):
        return "-"
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 6000:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def claim(recipe_name: str, run: Run, baseline: Run | None) -> str:
    """The reference's headline claim for a recipe, and what this run shows about it, in wall time
    (measured by the claim's own function in ``segkit.teaching.comparison.CLAIMS``)."""
    base_published = PUBLISHED["baseline"]
    if recipe_name == "baseline":
        return (f"Published: the optimized baseline reaches {base_published.miou} mIoU in "
                f"{base_published.hours} h on 8xA100.")
    if recipe_name not in CLAIMS:
        return ""
    headline = CLAIMS[recipe_name]
    published = PUBLISHED[recipe_name]
    said = (f"Published: {recipe_name} {headline.statement} ({duration_text(published.hours * 3600)} against "
            f"the baseline's {duration_text(base_published.hours * 3600)}).")
    if baseline is None or not baseline.history or not run.history:
        return said
    value = headline.measure(baseline, run)
    target, base_time = baseline.final["miou"], baseline.final["wall_time"]
    if headline.unit == "x" and value is None:
        best = max(row["miou"] for row in run.history)
        return (f"{said} Here: {recipe_name} did not reach the baseline's final mIoU {target:.2f} "
                f"(its best: {best:.2f}).")
    if headline.unit == "x":
        return (f"{said} Here: {recipe_name} reached the baseline's final mIoU {target:.2f} after "
                f"{duration_text(comparison.cost_to_reach(run, target))}, {value:.1f}x sooner than the baseline's "
                f"{duration_text(base_time)}.")
    here = (f"{said} Here: {comparison.final_gain(baseline, run):+.2f} mIoU in "
            f"{comparison.cost_ratio(baseline, run):.2f}x the baseline's time")
    if headline.measure is comparison.gain_at_equal_cost and value is not None:
        here += f"; {value:+.2f} when both stop at the baseline's {duration_text(base_time)}"
    return here + "."


def results_table(run: Run, baseline: Run | None) -> Table:
    """A run against the baseline run of the same profile and seed (if given) and the published numbers."""
    name = run.recipe
    columns = ["", "mIoU", "vs baseline", "training time", "time vs baseline"]
    rows, highlight = [], []

    def here(label: str, subject: Run) -> list[Any]:
        miou, seconds = subject.final.get("miou", math.nan), subject.final.get("wall_time", math.nan)
        if baseline is None:
            return [label, miou, None, duration_text(seconds), None]
        return [label, miou, f"{miou - baseline.final['miou']:+.2f}", duration_text(seconds),
                f"{seconds / baseline.final['wall_time']:.2f}x"]

    rows.append(here(f"{name}, here ({run.info.get('profile', {}).get('name', '?')})", run))
    highlight.append(True)
    if baseline is not None and name != "baseline":
        rows.append(here("baseline, here", baseline))
        highlight.append(False)
    if name in PUBLISHED:
        base, published = PUBLISHED["baseline"], PUBLISHED[name]
        rows.append([f"{name}, published (8xA100)", published.miou, f"{published.miou - base.miou:+.2f}",
                     duration_text(published.hours * 3600), f"{published.hours / base.hours:.2f}x"])
        highlight.append(False)
        if name != "baseline":
            rows.append(["baseline, published (8xA100)", base.miou, "+0.00",
                         duration_text(base.hours * 3600), "1.00x"])
            highlight.append(False)
    notes = [note for note in (claim(name, run, baseline),) if note]
    return Table(columns, rows, caption=f"{run.name}: results", notes=notes, highlight=highlight)


def summary_table(runs: Sequence[Run]) -> Table:
    """One row per run: final mIoU and time, against the first baseline run and the published numbers."""
    baseline = next((run for run in runs if run.recipe == "baseline"), None)
    columns = ["recipe", "run", "epochs", "mIoU", "vs baseline", "training time", "time vs baseline",
               "published mIoU", "published vs baseline", "published time"]
    rows = []
    for run in runs:
        miou, seconds = run.final.get("miou", math.nan), run.final.get("wall_time", math.nan)
        has_base = baseline is not None and baseline.history
        published = PUBLISHED.get(run.recipe)
        rows.append([
            run.recipe, run.name, f"{run.final['epoch']:g}" if run.history else None, miou,
            f"{miou - baseline.final['miou']:+.2f}" if has_base else None,
            duration_text(seconds),
            f"{seconds / baseline.final['wall_time']:.2f}x" if has_base else None,
            published.miou if published else None,
            f"{published.miou - PUBLISHED['baseline'].miou:+.2f}" if published else None,
            duration_text(published.hours * 3600) if published else None,
        ])
    claims = (claim(run.recipe, run, baseline) for run in runs if run.recipe != "baseline")
    notes = [note for note in claims if note]
    return Table(columns, rows, caption="Final results per recipe", notes=notes)

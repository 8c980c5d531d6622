"""The class table: learners publish their finished runs to one shared folder and see the room's runs.

A workshop's learners each train on their own account; the room learns most from putting the runs
side by side. ``share`` writes one small JSON entry for a finished run into the class folder
(``$SEGKIT_CLASS``, which a hub sets for everyone, or a folder given); ``class_table`` and
``class_figure`` read every entry back, grouped by what was trained (recipe, the settings changed
from it, profile and length), with each learner's own entries highlighted and, per group, the spread
across learners: two groups whose means differ by less than that spread have not been told apart.

Entries cannot be overwritten by another learner: each is a file named after its learner, written by
that learner's account; in a folder with the sticky bit (``chmod 1777`` or ``3770``, as
``docs/workshop.md`` sets it up) no one else can replace or delete it, and a reader checks that each
file's owner is the learner it names (an entry that fails is shown as such, not as theirs). Where
every learner is the same Unix user (Zero to JupyterHub's default) the owner check cannot tell
learners apart, and ``JUPYTERHUB_USER`` names them.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import pwd
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from segkit import recipes
from segkit.errors import ConfigError, RunError
from segkit.runs import Run
from segkit.teaching.plots import recipe_color
from segkit.teaching.tables import Table

#: The environment variable that names the class folder (the hub sets it for every learner).
CLASS_VARIABLE = "SEGKIT_CLASS"
#: What an entry file's name is made of: ``LEARNER--RUN_NAME.json``.
ENTRY_SEPARATOR = "--"


def learner_name() -> str:
    """Who is sharing: the hub's user name where a hub started this process, else the Unix user."""
    return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()


def class_folder(folder: str | Path | None = None) -> Path:
    """The class folder: ``folder``, or ``$SEGKIT_CLASS``; a one-line error when neither is set."""
    folder = folder or os.environ.get(CLASS_VARIABLE)
    if not folder:
        raise ConfigError(f"no class folder: set {CLASS_VARIABLE} (the instructor's shared folder, e.g. "
                          f"/srv/segkit-class) or give one (segkit share RUN --class-folder DIR)")
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"class folder {folder} does not exist; the instructor makes it once "
                          f"(mkdir {folder} && chmod 1777 {folder}, docs/workshop.md)")
    return folder


@dataclass(frozen=True)
class Entry:
    """One learner's published run."""

    learner: str
    run_name: str
    group: str  # what was trained: recipe, changed settings, profile, length
    recipe: str
    profile: str
    seed: int
    miou: float  # final validation mIoU, percent
    wall_time: float  # seconds of training
    shared_at: str
    verified: bool = True  # the file's owner is the learner it names

    def to_json(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "verified"}


def settings_changed(run: Run) -> dict[str, Any]:
    """The recipe settings of ``run`` that differ from the named recipe it started from."""
    recipe = run.info.get("recipe", {})
    name = recipe.get("name", "")
    reference = vars(recipes.get(name)) if name in recipes.RECIPES else {}
    return {key: value for key, value in recipe.items() if key != "name" and reference.get(key, value) != value}


def group_of(run: Run) -> str:
    """What a run trained, as one label: ``baseline, dice_weight=0 (cpu, 2ba)``."""
    changed = ", ".join(f"{key}={value}" for key, value in sorted(settings_changed(run).items()))
    where = ", ".join(part for part in (run.info.get("profile", {}).get("name", "?"), run.info.get("duration"))
                      if part)
    return f"{run.recipe}{', ' + changed if changed else ''} ({where})"


def entry_of(run: Run, learner: str) -> Entry:
    return Entry(learner=learner, run_name=run.name, group=group_of(run), recipe=run.recipe,
                 profile=run.info.get("profile", {}).get("name", "?"), seed=run.info.get("seed", 0),
                 miou=round(float(run.final["miou"]), 2), wall_time=round(float(run.final.get("wall_time", 0)), 1),
                 shared_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def share(run_folder: str | Path, folder: str | Path | None = None, *, learner: str | None = None) -> Path:
    """Publish a finished run to the class folder; sharing it again replaces the learner's own entry.

    Returns:
        The entry's path.
    """
    run = Run.load(run_folder)
    if run.status != "finished" or not run.history:
        raise RunError(f"{run.folder} is {run.status}: share it once it has finished "
                       f"(run the same training command again to finish it)")
    folder = class_folder(folder)
    learner = learner or learner_name()
    if not re.fullmatch(r"[A-Za-z0-9_.@-]+", learner):
        raise ConfigError(f"learner name {learner!r} can hold only letters, digits and _ . @ -")
    path = folder / f"{learner}{ENTRY_SEPARATOR}{run.name}.json"
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RunError(f"the class folder {folder} is read-only for {getpass.getuser()}; ask the instructor to "
                       f"open it to learners (chmod 1777 {folder}, docs/workshop.md)")
    staging = Path(folder / f".{learner}.{os.getpid()}.json")
    staging.write_text(json.dumps(entry_of(run, learner).to_json(), indent=1) + "\n")
    staging.chmod(0o644)  # everyone reads it; only its owner (and the folder's owner) can replace it
    try:
        os.replace(staging, path)
    except PermissionError:  # the sticky bit: the name is taken by another account's file
        staging.unlink()
        raise RunError(f"cannot write {path}: it belongs to {owner_name(path)}, not to {getpass.getuser()}; "
                       f"ask the instructor to remove it") from None
    return path


def owner_name(path: Path) -> str:
    uid = path.stat().st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def read_entries(folder: str | Path | None = None) -> list[Entry]:
    """Every entry of the class folder, oldest group first; unreadable files are skipped."""
    folder = class_folder(folder)
    entries = []
    for path in sorted(folder.glob(f"*{ENTRY_SEPARATOR}*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entry = Entry(**{key: data[key] for key in Entry.__dataclass_fields__ if key != "verified"})
        except (OSError, ValueError, KeyError, TypeError):
            continue
        owner = owner_name(path)
        # Where every learner is one Unix account (JUPYTERHUB_USER names them), the owner cannot tell them apart.
        one_account = os.environ.get("JUPYTERHUB_USER", getpass.getuser()) != getpass.getuser()
        verified = path.name.startswith(entry.learner + ENTRY_SEPARATOR) and (
            owner == entry.learner or (one_account and owner == getpass.getuser()))
        entries.append(Entry(**{**entry.__dict__, "verified": verified}))
    return entries


@dataclass(frozen=True)
class GroupSpread:
    """The final mIoUs of one group across learners."""

    group: str
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def spread(self) -> float | None:
        """The sample standard deviation across learners (None for one)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def text(self) -> str:
        return f"{self.mean:.2f} ± {self.spread:.2f} (n={len(self.values)})"


def spreads(entries: Sequence[Entry]) -> list[GroupSpread]:
    groups: dict[str, list[float]] = {}
    for entry in entries:
        if entry.verified:
            groups.setdefault(entry.group, []).append(entry.miou)
    return [GroupSpread(group, tuple(values)) for group, values in groups.items()]


def class_table(folder: str | Path | None = None, me: str | None = None) -> Table:
    """The room's runs, one row each, grouped by what was trained; the reader's own rows in bold."""
    me = me or learner_name()
    entries = read_entries(folder)
    by_group = {spread.group: spread for spread in spreads(entries)}
    order = sorted(entries, key=lambda e: (e.group, -e.miou, e.learner))
    rows, highlight = [], []
    for entry in order:
        group = by_group.get(entry.group)
        spread = "" if group is None or group.spread is None else group.text()
        rows.append([entry.group, entry.learner + ("" if entry.verified else " (not verified)"), entry.miou,
                     f"{entry.wall_time:.0f} s", spread, entry.run_name])
        highlight.append(entry.learner == me)
    notes = [f"{len(entries)} runs from {len({e.learner for e in entries})} learners in {class_folder(folder)}; "
             f"yours in bold."]
    noisy = [group for group in by_group.values() if group.spread is not None]
    if noisy:
        widest = max(noisy, key=lambda group: group.spread)
        notes.append(f"The same training on different learners' machines ends within a spread (± is the standard "
                     f"deviation across learners; the widest here: {widest.spread:.2f} in {widest.group}). Two "
                     f"groups whose means differ by less than their spreads have not been told apart (a larger "
                     f"difference is not a result either before its interval for the n learners is worked out).")
    if any(not e.verified for e in entries):
        notes.append("(not verified): the entry's file belongs to another account than the learner it names.")
    return Table(["trained", "learner", "final mIoU", "training", "group mean ± spread", "run"], rows,
                 caption="The class table", notes=notes, highlight=highlight)


def class_figure(folder: str | Path | None = None, me: str | None = None) -> go.Figure:
    """Each learner's final mIoU as a point per group, the reader's own ringed, and each group's mean ±
    spread across learners as a bar behind the points."""
    me = me or learner_name()
    entries = [entry for entry in read_entries(folder) if entry.verified]
    figure = go.Figure()
    for group in spreads(entries):
        if group.spread is not None:
            figure.add_trace(go.Scatter(
                x=[group.group], y=[group.mean], mode="markers", name="mean ± spread across learners",
                marker={"symbol": "line-ew-open", "size": 28, "color": "#555"}, showlegend=False,
                error_y={"type": "data", "array": [group.spread], "color": "#999", "thickness": 6, "width": 0},
                hovertemplate=f"{group.text()}<extra></extra>"))
    for mine in (False, True):
        chosen = [entry for entry in entries if (entry.learner == me) == mine]
        if not chosen:
            continue
        figure.add_trace(go.Scatter(
            x=[entry.group for entry in chosen], y=[entry.miou for entry in chosen], mode="markers",
            name="yours" if mine else "the room's",
            text=[entry.learner for entry in chosen], hovertemplate="%{text}: %{y:.2f}<extra></extra>",
            marker={"size": 14 if mine else 9, "color": [recipe_color(entry.recipe) for entry in chosen],
                    "line": {"width": 3 if mine else 0, "color": "black"}, "opacity": 1 if mine else 0.7}))
    finite = [entry.miou for entry in entries if math.isfinite(entry.miou)]
    figure.update_layout(title="The class table: final mIoU of each learner's run, by what was trained",
                         xaxis_title="what was trained (recipe, settings changed, profile)",
                         yaxis_title="final validation mIoU (%)", height=420, margin={"t": 50},
                         yaxis_range=[min(finite) - 2, max(finite) + 2] if finite else None)
    return figure


def share_and_show(runs: Sequence[Run] = (), folder: str | Path | None = None) -> None:
    """In a notebook: share ``runs`` (the finished ones) with the class, then display the class figure and
    table; without a class folder, one line says how to set one up and nothing else happens."""
    from IPython.display import display

    try:
        folder = class_folder(folder)
    except ConfigError as error:
        print(f"No class table here: {error}")
        return
    for run in runs:
        if run.status == "finished":
            print(f"shared {run.name} as {share(run.folder, folder).name}")
    display(class_figure(folder), class_table(folder))

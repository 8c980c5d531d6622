"""ipywidgets views for the notebooks: a recipe picker, a train button, a prediction gallery, a share button.

They hold no logic of their own: the picker wires switches and fields to a
``segkit.teaching.recipe_editor.RecipeEditor``, the train button calls ``segkit.teaching.notebooks.Job.train``
with the picked recipe, the gallery shows ``segkit.teaching.gallery.Predictions``. Each is an
ipywidgets box, so a notebook cell that ends with one displays it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w
from IPython.display import HTML, display

from segkit import recipes
from segkit.errors import SegkitError, one_line
from segkit.recipes import Recipe
from segkit.teaching import classroom
from segkit.teaching.gallery import Predictions
from segkit.teaching.recipe_editor import RecipeEditor

if TYPE_CHECKING:
    from segkit.teaching.notebooks import Job

_WIDE = {"description_width": "190px"}


def _field(name: str) -> w.ValueWidget:
    """The input widget for one recipe field, as ``segkit.recipes.FIELDS`` describes it."""
    info = recipes.FIELDS[name]
    common = {"description": info.label, "style": _WIDE, "layout": w.Layout(width="340px")}
    if info.control == "int":
        return w.BoundedIntText(min=1, max=100000, **common)
    if info.control == "duration":
        return w.Text(continuous_update=False, placeholder="e.g. 1000ba or 5ep", **common)
    if info.control == "float":
        return w.BoundedFloatText(min=0.0, max=100.0, step=info.step, **common)
    if info.control == "toggle":
        return w.Checkbox(description=info.label, indent=False)
    if info.control == "choice":
        return w.ToggleButtons(options=list(info.choices), description=info.label, style=_WIDE)
    raise ValueError(f"recipe field {name!r} has control {info.control!r}, which the lab does not edit")


#: The fields the lab edits (the "fixed" ones stay the baseline's).
EDITABLE = tuple(name for name, info in recipes.FIELDS.items() if info.control != "fixed")


class RecipePicker(w.VBox):
    """Switch EMA, SAM, MixUp, channels-last, the Dice term and the LR schedule; edit their settings.

    Shows the resulting recipe against the baseline (changes in bold), or why it is invalid.

    Args:
        start: the recipe (or name) to start from.
        table: turns the editor into the table shown (default: ``editor.table()``); a ``Job``'s
            notebook passes one that adds the column for its profile.
    """

    def __init__(self, start: Recipe | str = "baseline", table: Callable[[RecipeEditor], Any] | None = None):
        self.editor = RecipeEditor(start)
        self._table = table or (lambda editor: editor.table())
        self._syncing = False
        self.start_from = w.Dropdown(options=list(recipes.RECIPES), description="start from", style=_WIDE,
                                     value=self.editor.start.name if self.editor.start.name in recipes.RECIPES
                                     else "baseline")
        self.switches = {name: w.Checkbox(description=switch.label, indent=False)
                         for name, switch in recipes.SWITCHES.items()}
        self.fields = {name: _field(name) for name in EDITABLE}
        self.view = w.HTML()
        self.start_from.observe(self._start_changed, names="value")
        for name, box in self.switches.items():
            box.observe(lambda change, name=name: self._set(name, change["new"]), names="value")
        for name, box in self.fields.items():
            box.observe(lambda change, name=name: self._set(name, change["new"]), names="value")
        # One column per switch (its box, then its settings), two to a row; then the fields of no switch.
        owned = {name for switch in recipes.SWITCHES.values() for name in switch.fields}
        columns = [w.VBox([self.switches[name], *(self.fields[f] for f in switch.fields if f in self.fields)])
                   for name, switch in recipes.SWITCHES.items()]
        rest = [self.fields[name] for name in EDITABLE if name not in owned]
        controls = w.VBox([
            self.start_from,
            *(w.HBox(columns[i:i + 2]) for i in range(0, len(columns), 2)),
            *(box for box in rest if not isinstance(box, (w.BoundedIntText, w.BoundedFloatText, w.Text))),
            w.HBox([box for box in rest if isinstance(box, (w.BoundedIntText, w.BoundedFloatText, w.Text))]),
        ])
        super().__init__([controls, self.view])
        self.refresh()

    @property
    def recipe(self) -> Recipe:
        """The picked recipe (raises ``ConfigError`` while a setting is invalid)."""
        return self.editor.recipe

    def _start_changed(self, change: dict) -> None:
        if not self._syncing:
            self.editor.reset(change["new"])
            self.refresh()

    def _set(self, name: str, value: Any) -> None:
        if self._syncing:
            return
        self.editor.set(name, value)
        self.refresh()

    def refresh(self) -> None:
        """Show the editor's state: every control's value and enabled state, and the table."""
        self._syncing = True
        try:
            for name, box in self.switches.items():
                box.value = self.editor.switches[name]
            for name, box in self.fields.items():
                box.value = self.editor.value(name)
                box.disabled = not self.editor.active(name)
        finally:
            self._syncing = False
        error = self.editor.error
        self.view.value = (f"<p style='color:#b00020'>{error}</p>" if error
                           else self._table(self.editor).to_html())


class PredictionGallery(w.VBox):
    """Image, ground truth and prediction of a trained run on validation images, with a class legend.

    Args:
        run_folder: a finished run folder.
        count: images shown at once.
        data: data root of the validation images (default: the run's own).
    """

    def __init__(self, run_folder: str | Path, count: int = 4, data: str | Path | None = None):
        self.predictions = Predictions(run_folder, data)
        last = len(self.predictions) - 1
        self.first = w.IntSlider(value=0, min=0, max=last, description="first image", continuous_update=False)
        self.count = w.IntSlider(value=min(count, last + 1), min=1, max=min(8, last + 1),
                                 description="images", continuous_update=False)
        self.view = w.HTML()
        self.first.observe(lambda change: self.render(), names="value")
        self.count.observe(lambda change: self.render(), names="value")
        super().__init__([w.HBox([self.first, self.count]), self.view])
        self.render()

    @property
    def indices(self) -> list[int]:
        return list(range(self.first.value, min(self.first.value + self.count.value, len(self.predictions))))

    def render(self) -> None:
        self.view.value = self.predictions.html(self.indices)

    def _repr_mimebundle_(self, **kwargs) -> dict[str, Any]:
        # JupyterLab draws the widget; where widgets cannot run (GitHub, nbviewer, segkit.teaching.pages) the
        # images shown when the cell ran stand in for it.
        return {**super()._repr_mimebundle_(**kwargs), "text/html": self.view.value}


class TrainPanel(w.VBox):
    """A button that trains the picked recipe with this notebook's job, then shows curves and predictions.

    Args:
        picker: the recipe picker whose recipe is trained.
        job: the notebook's ``segkit.teaching.notebooks.Job`` (profile, data, seed, save folder).
    """

    def __init__(self, picker: RecipePicker, job: Job):
        self.picker, self.job = picker, job
        self.result = None
        self.button = w.Button(description="Train this recipe", icon="play", button_style="primary",
                               layout=w.Layout(width="220px"))
        self.output = w.Output()
        self.button.on_click(self._clicked)
        super().__init__([self.button, self.output])

    def _clicked(self, _button: w.Button) -> None:

        self.button.disabled = True
        self.output.clear_output()
        with self.output:
            try:
                recipe = self.picker.recipe
                print(f"training {self.job.run_name_for(recipe)} on profile {self.job.profile} "
                      f"(a finished run of the same recipe is reused)")
                self.result = self.job.train(recipe)
                display(HTML("<b>Predictions of this run</b>"), PredictionGallery(self.result.folder))
                if os.environ.get(classroom.CLASS_VARIABLE):
                    display(ShareButton(self.result.folder))
            except SegkitError as error:
                print(f"{type(error).__name__}: {one_line(error)}")
            finally:
                self.button.disabled = False


class ShareButton(w.VBox):
    """A button that publishes a finished run to the class table (``segkit.teaching.classroom.share``).

    Args:
        run_folder: the finished run to share.
        folder: the class folder (default ``$SEGKIT_CLASS``).
    """

    def __init__(self, run_folder: str | Path, folder: str | Path | None = None):
        self.run_folder, self.folder = run_folder, folder
        self.button = w.Button(description="Share with the class", icon="users", layout=w.Layout(width="220px"))
        self.status = w.HTML()
        self.button.on_click(self._clicked)
        super().__init__([self.button, self.status])

    def _clicked(self, _button: w.Button) -> None:
        try:
            path = classroom.share(self.run_folder, self.folder)
            self.status.value = f"Shared as <code>{path.name}</code>: notebook 04 shows the class table."
        except SegkitError as error:
            self.status.value = f"{type(error).__name__}: {one_line(error)}"


class RecipeLab(w.VBox):
    """The recipe picker and the train button together: edit a recipe, train it, watch it.

    Args:
        job: the notebook's job.
        start: the recipe to start from (default: the notebook's).
    """

    def __init__(self, job: Job, start: Recipe | str | None = None):
        self.picker = RecipePicker(start or job.recipe,
                                   table=lambda editor: job.recipe_table(editor.recipe))
        self.train = TrainPanel(self.picker, job)
        super().__init__([self.picker, self.train])

    def _repr_mimebundle_(self, **kwargs) -> dict[str, Any]:
        # Where widgets cannot run, the starting recipe's table stands in for the lab.
        note = "<p><i>The recipe lab: open this notebook in JupyterLab to edit and train a recipe here.</i></p>"
        return {**super()._repr_mimebundle_(**kwargs), "text/html": note + self.picker.view.value}

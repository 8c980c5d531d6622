"""The widgets are thin views: their callbacks fire without a browser and reach segkit's logic."""

from __future__ import annotations

import dataclasses

import pytest

from segkit import recipes
from segkit.errors import ConfigError
from segkit.runs import Run
from segkit.teaching.notebooks import Job
from segkit.teaching.widgets import PredictionGallery, RecipeLab, RecipePicker, ShareButton, TrainPanel


def test_picker_switch_changes_the_recipe_and_the_table():
    picker = RecipePicker("baseline")
    assert picker.fields["sam_rho"].disabled and "<b>" not in picker.view.value
    picker.switches["sam"].value = True
    assert picker.recipe.sam_rho == 0.3 and not picker.fields["sam_rho"].disabled
    assert "SAM: radius rho" in picker.view.value and "font-weight:bold" in picker.view.value
    picker.fields["sam_rho"].value = 0.05
    picker.fields["lr_schedule"].value = "constant"
    picker.fields["channels_last"].value = True
    assert picker.recipe == dataclasses.replace(recipes.baseline(), name="custom", sam_rho=0.05,
                                                sam_interval=2, lr_schedule="constant", channels_last=True)


def test_picker_shows_an_invalid_setting_instead_of_the_table():
    picker = RecipePicker("mild")
    picker.fields["ema_half_life"].value = "soon"
    assert "must be a duration like" in picker.view.value and "<table" not in picker.view.value
    with pytest.raises(ConfigError):
        _ = picker.recipe


def test_picker_start_from_resets_every_control():
    picker = RecipePicker("baseline")
    picker.switches["dice"].value = False
    picker.start_from.value = "hot"
    assert picker.recipe == recipes.hot()
    assert all(box.value for box in picker.switches.values())
    assert picker.fields["ema_half_life"].value == "2000ba" and picker.fields["lr_schedule"].value == "cosine"


class RecordingJob:
    """Stands in for a notebook's Job: records what the train button asks for."""

    profile = "tiny"

    def __init__(self):
        self.trained = []

    def run_name_for(self, recipe):
        return f"{recipe.name}-run"

    def train(self, recipe):
        self.trained.append(recipe)
        raise ConfigError("stop here")


def test_train_button_trains_the_picked_recipe(capsys):
    picker, job = RecipePicker("medium"), RecordingJob()
    panel = TrainPanel(picker, job)
    picker.switches["mixup"].value = False
    panel.button.click()
    assert job.trained == [dataclasses.replace(recipes.medium(), name="custom", mixup_alpha=None)]
    assert "ConfigError: stop here" in capsys.readouterr().out  # one line, no traceback
    assert not panel.button.disabled


def test_train_button_with_an_invalid_recipe_trains_nothing(capsys):
    picker, job = RecipePicker("medium"), RecordingJob()
    picker.fields["sam_rho"].value = 0.0
    TrainPanel(picker, job).button.click()
    assert job.trained == [] and "ConfigError: field 'sam_rho' must be" in capsys.readouterr().out


@pytest.fixture(scope="module")
def trained_lab(tmp_path_factory, scenes_root):
    """The recipe lab of a tiny job, after its train button was clicked with MixUp switched on."""
    job = Job(recipe=recipes.baseline(), profile="tiny", data_root=str(scenes_root), duration="2ba",
              save_folder=str(tmp_path_factory.mktemp("lab")))
    lab = RecipeLab(job)
    lab.picker.switches["mixup"].value = True
    lab.train.button.click()
    return lab


def test_recipe_lab_button_trains_a_real_run(trained_lab):
    result = trained_lab.train.result
    assert result is not None and result.run.status == "finished"
    run = Run.load(result.folder)
    assert run.info["recipe"]["mixup_alpha"] == 0.2 and run.info["recipe"]["name"] == "custom"
    assert run.name.startswith("custom-") and run.name.endswith("-tiny-seed17-2ba")
    # The table in the lab shows the profile's column.
    assert "custom on tiny" in trained_lab.picker.view.value


def test_prediction_gallery_follows_its_sliders(trained_lab):
    gallery = PredictionGallery(trained_lab.train.result.folder, count=2)
    assert gallery.indices == [0, 1] and gallery.view.value.count("<tr>") == 2 + 1  # header and 2 rows
    gallery.first.value = 3
    assert gallery.indices == [3]  # 4 validation images: only the last one is left
    assert "#3" in gallery.view.value and "ground truth" in gallery.view.value
    gallery.count.value = 1
    gallery.first.value = 0
    assert gallery.view.value.count("data:image/png;base64,") == 3 + 0  # image, truth, prediction


def test_gallery_and_lab_leave_a_static_view_where_widgets_cannot_run(trained_lab):
    gallery = PredictionGallery(trained_lab.train.result.folder, count=2)
    bundle = gallery._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # JupyterLab draws the widget
    assert bundle["text/html"] == gallery.view.value and "data:image/png;base64," in bundle["text/html"]
    gallery.first.value = 2
    assert gallery._repr_mimebundle_()["text/html"] == gallery.view.value  # what is shown now
    lab_view = trained_lab._repr_mimebundle_()["text/html"]
    assert "open this notebook in JupyterLab" in lab_view and "<table" in lab_view


def test_share_button_publishes_the_lab_s_run_to_the_class_folder(trained_lab, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_USER", "ada")
    button = ShareButton(trained_lab.train.result.folder, tmp_path)
    button.button.click()
    entry = tmp_path / f"ada--{trained_lab.train.result.folder.name}.json"
    assert entry.is_file() and f"Shared as <code>{entry.name}</code>" in button.status.value
    missing = ShareButton(trained_lab.train.result.folder, tmp_path / "nowhere")
    missing.button.click()
    assert missing.status.value.startswith("ConfigError: class folder") and "does not exist" in missing.status.value

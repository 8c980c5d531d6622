"""The notebooks, executed headless by papermill as real (tiny) training jobs, and their contract:
the parameters cell, one-line errors, no committed outputs, ruff-clean code, and the main job."""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from segkit import recipes
from segkit.errors import ConfigError, DataError, SegkitError
from segkit.runs import Run, find_runs
from segkit.teaching import notebooks
from segkit.teaching.headless import run_all
from segkit.teaching.notebooks import NOTEBOOKS, NOTEBOOKS_DIR, RESULTS_NOTEBOOK, Job, check_parameters
from segkit.teaching.plots import PLOTLY_MIME
from tests.conftest import REPO

SMOKE = {"profile": "tiny", "duration": "2ba"}


@pytest.fixture(scope="module")
def kernel_env():
    """Kernels import this checkout's segkit, whatever is installed."""
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), previous) if p)
    yield
    if previous is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = previous


@pytest.fixture(scope="module")
def main_job(tmp_path_factory, kernel_env):
    """The main job on the smoke parameters: all four notebooks, in order, into one folder."""
    out = tmp_path_factory.mktemp("main-job")
    return out, run_all(out, parameters=SMOKE)


def code_cells(book: nbformat.NotebookNode) -> list:
    return [cell for cell in book.cells if cell.cell_type == "code"]


def cell_with(book: nbformat.NotebookNode, source: str):
    return next(cell for cell in code_cells(book) if source in cell.source)


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_notebook_trains_and_keeps_its_curves(main_job, name):
    out, outcomes = main_job
    outcome = next(o for o in outcomes if o.notebook == name)
    assert outcome.error is None
    run = Run.load(out / "runs" / f"{NOTEBOOKS[name]}-tiny-seed17-2ba")
    assert run.status == "finished" and run.history[-1]["step"] == 2 and (run.folder / "model.pt").is_file()

    book = nbformat.read(outcome.output, as_version=4)
    injected = next(cell for cell in book.cells if "injected-parameters" in cell.metadata.get("tags", []))
    assert 'profile = "tiny"' in injected.source and 'duration = "2ba"' in injected.source
    for cell in code_cells(book):
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source

    # The training cell ends with the final figure as a plain plotly output holding metrics.json's data.
    training = cell_with(book, "result = job.train(")
    figures = [o for o in training.outputs if PLOTLY_MIME in o.get("data", {})]
    assert len(figures) == 1
    traces = {trace["name"]: trace for trace in figures[0]["data"][PLOTLY_MIME]["data"]}
    miou = traces[f"{run.name} mIoU"]
    assert miou["y"] == [entry["miou"] for entry in run.history]
    assert miou["x"] == [entry["wall_time"] for entry in run.history]
    assert traces["images/s"]["y"] == [entry["images_per_second"] for entry in run.history]
    assert len(traces["train loss (per step)"]["y"]) == 2
    assert "final mIoU" in figures[0]["data"]["text/plain"]
    # One printed line per evaluation, no progress bars.
    printed = "".join(o.get("text", "") for o in training.outputs if o.output_type == "stream")
    assert "epoch 0.5 of 2ba  step 2  mIoU" in printed and "%|" not in printed
    # Headless, the curves stream nothing through a widget: no live area, only the final figure.
    assert not [o for o in training.outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    state = book.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    assert all(model["state"].get("outputs", []) == [] for model in state.values()
               if model["model_name"] == "OutputModel")
    # No FigureWidget (its 5 MB bundle would be saved with the notebook).
    assert not any("FigureModel" in model["model_name"] for model in state.values())
    assert outcome.output.stat().st_size < 2_000_000

    results = cell_with(book, "job.results(result)").outputs[0]["data"]["text/html"]
    assert "published (8xA100)" in results
    if name != "00_baseline":  # compared with the baseline run that 00 left in the same folder
        assert "baseline, here" in results
        assert traces["baseline-tiny-seed17-2ba (reference)"]["y"]


def test_main_job_writes_a_summary_page(main_job):
    out, outcomes = main_job
    assert [o.notebook for o in outcomes] == [*NOTEBOOKS, RESULTS_NOTEBOOK]
    page = (out / "index.html").read_text()
    for name in [*NOTEBOOKS, RESULTS_NOTEBOOK]:
        assert f"href='{name}.ipynb'" in page and f"href='{name}.html'" in page
    assert "hot-tiny-seed17-2ba" in page and "49.91" in page  # a run, and its published mIoU
    assert not re.findall(r"<script[^>]*\bsrc=", page) and "Plotly.newPlot" in page  # plotly.js inline


def test_main_job_pages_and_pictures(main_job):
    """Each executed notebook carries a PNG beside each plotly figure, and has an offline page."""
    out, outcomes = main_job
    assert (out / "plotly.min.js").stat().st_size > 1_000_000  # shared by the pages
    for outcome in outcomes:
        book = nbformat.read(outcome.output, as_version=4)
        figures = [o["data"] for cell in code_cells(book) for o in cell.outputs if PLOTLY_MIME in o.get("data", {})]
        assert figures and all(base64.b64decode(f["image/png"]).startswith(b"\x89PNG") for f in figures)
        page = outcome.page.read_text()
        assert outcome.page == out / f"{outcome.notebook}.html"
        assert page.count("Plotly.newPlot(") == len(figures) and "<script src='plotly.min.js'" in page
        assert not re.findall(r"<script[^>]*\bsrc=[\"']https?:", page)  # nothing from the network


def test_results_notebook_compares_the_four_runs(main_job):
    out, outcomes = main_job
    outcome = next(o for o in outcomes if o.notebook == RESULTS_NOTEBOOK)
    assert outcome.error is None and outcome.run is None
    book = nbformat.read(outcome.output, as_version=4)
    listed = cell_with(book, "print(results.passes_note(runs))").outputs[0]["text"]
    assert all(f"{recipe}: {recipe}-tiny-seed17-2ba" in listed for recipe in NOTEBOOKS.values())
    figure = cell_with(book, "results.time_figure(runs)").outputs[0]["data"][PLOTLY_MIME]
    assert {trace["name"] for trace in figure["data"]} >= {"hot, published (8xA100)", "baseline, this run "
                                                          "(baseline-tiny-seed17-2ba)"}
    claims = cell_with(book, "results.claims_table(runs").outputs[0]["data"]["text/html"]
    assert "5.40x" in claims and "+4.58" in claims
    assert "here, vs your CE only (passes)" in claims  # 00 trained the CE-only baseline
    assert "(3 seeds; 95% interval -1.53 to +4.19): inconclusive" in claims  # the study's verdict on hot
    augmented = cell_with(book, "augmented = results.evaluations").outputs[0]["data"]["text/html"]
    assert "multi-scale + flip" in augmented and augmented.count("<tr>") == 1 + 4


def test_results_notebook_names_a_missing_run_folder(tmp_path, kernel_env):
    output = tmp_path / "out.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as failure:
        papermill.execute_notebook(NOTEBOOKS_DIR / f"{RESULTS_NOTEBOOK}.ipynb", output, progress_bar=False,
                                   engine_name="segkit",
                                   parameters={"profile": "tiny", "run_folders": str(tmp_path / "nowhere")})
    assert failure.value.ename == "DataError" and "nowhere is not a run folder" in failure.value.evalue


def test_ruff_passes_on_the_code_and_the_notebooks():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    done = subprocess.run([ruff, "check", "."], cwd=REPO, capture_output=True, text=True)  # *.ipynb included
    assert done.returncode == 0, done.stdout + done.stderr


def test_bad_parameter_stops_the_notebook_in_its_first_code_cell(tmp_path, kernel_env):
    output = tmp_path / "out.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as failure:  # as `papermill ... -p seed abc`
        papermill.execute_notebook(NOTEBOOKS_DIR / "03_hot.ipynb", output, parameters={"seed": "abc"},
                                   engine_name="segkit", progress_bar=False, cwd=tmp_path)
    book = nbformat.read(output, as_version=4)
    failed = next(cell for cell in code_cells(book) if cell.metadata.papermill.status == "failed")
    assert "notebooks.start(globals()" in failed.source
    (error,) = failed.outputs
    assert error.traceback == ["ConfigError: parameter seed must be an integer, got 'abc' (a string); "
                               "for example -p seed 17"]  # one line, no traceback
    assert failure.value.ename == "ConfigError"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv,message", [
    (["-p", "seed", "abc"], "parameter seed must be an integer, got 'abc' (a string); for example -p seed"),
    (["-p", "epochs", "3"], "unknown parameter 'epochs'; the parameters are profile, data_root, duration, "
                            "gpus, run_name, save_folder, seed, weights"),
    (["-p", "run_name", "x"], "parameter run_name names one run, and the main job trains four; leave it out"),
    (["--only", "spicy"], "unknown notebook 'spicy'; choose from 00_baseline, 01_mild, 02_medium, 03_hot"),
])
def test_cli_checks_parameters_before_running_anything(tmp_path, capsys, argv, message):
    from segkit.cli import main

    assert main(["notebooks", "--out", str(tmp_path / "out"), *argv]) == 2
    assert capsys.readouterr().err.startswith(f"segkit: error: {message}")
    assert not (tmp_path / "out").exists()


def write_notebook(path: Path, *sources: str) -> None:
    cells = [nbformat.v4.new_code_cell("profile = 'cpu'")]
    cells[0].metadata["tags"] = ["parameters"]
    cells += [nbformat.v4.new_code_cell(source) for source in sources]
    book = nbformat.v4.new_notebook(cells=cells)
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(book, path)


def test_a_failed_notebook_is_named_with_its_cell_and_the_others_stay(tmp_path, kernel_env):
    source = tmp_path / "notebooks"
    source.mkdir()
    write_notebook(source / "00_baseline.ipynb", "print('fine')")
    write_notebook(source / "01_mild.ipynb", "x = 1", "1 / 0")
    with pytest.raises(SegkitError) as failure:
        run_all(tmp_path / "out", only=["baseline", "01_mild.ipynb"], parameters={"profile": "tiny"},
                notebooks_dir=source)
    assert str(failure.value) == (
        f"notebook 01_mild.ipynb failed in cell In [4] (ZeroDivisionError: division by zero); "
        f"its output so far is in {tmp_path / 'out' / '01_mild.ipynb'}")
    assert (tmp_path / "out" / "00_baseline.ipynb").is_file()
    page = (tmp_path / "out" / "index.html").read_text()
    assert "ZeroDivisionError" in page and "No run finished" in page


@pytest.mark.parametrize("values,error,message", [
    ({"profile": "tpu"}, ConfigError, "unknown profile 'tpu'"),
    ({"gpus": -1}, ConfigError, r"parameter gpus must be 0 \(every visible GPU\) or more, got -1"),
    ({"gpus": 3}, ConfigError, r"profile 'cpu': its global batch 8 does not split over 3 processes .*; pass gpus 2"),
    ({"nodes": 2}, ConfigError, "more than one node needs master_addr and master_port"),
    ({"node_rank": 1}, ConfigError, r"node_rank must be in 0 .. 0 \(nodes is 1\), got 1"),
    ({"seed": True}, ConfigError, r"parameter seed must be an integer, got True \(bool\)"),
    ({"seed": -1}, ConfigError, r"parameter seed must be in \[0, 2\*\*32\)"),
    ({"duration": 10}, ConfigError, "parameter duration must be a string, got 10 .an integer.; write it in"),
    ({"duration": "ten"}, ConfigError, "duration 'ten' must be a positive number of batches or epochs"),
    ({"run_name": "a/b"}, ConfigError, "run name 'a/b' must be"),
    ({"save_folder": ""}, ConfigError, "parameter save_folder is empty"),
    ({"weights": "missing.pth"}, ConfigError, "parameter weights 'missing.pth' is not"),
    ({"data_root": "/nonexistent"}, DataError, "^parameter data_root: data root /nonexistent does not exist; pass"),
])
def test_parameter_checks(values, error, message):
    with pytest.raises(error, match=message):
        check_parameters(values, "hot")


def test_a100_needs_data_and_gpus():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="profile 'a100' trains on CUDA GPUs and none is visible here"):
        check_parameters({"profile": "a100", "data_root": "/data/ADEChallengeData2016"}, "hot")


def test_job_names_and_finds_runs(tmp_path, scenes_root):
    job = check_parameters({"profile": "tiny", "seed": 3, "save_folder": str(tmp_path),
                            "data_root": str(scenes_root)}, "mild")
    assert job.run_name_for() == "mild-tiny-seed3"
    assert job.steps_per_epoch == 2  # 8 images, batch 4
    edited = dataclasses.replace(recipes.mild(), name="custom", mixup_alpha=0.2)
    assert job.run_name_for(edited).startswith("custom-") and job.run_name_for(edited).endswith("-tiny-seed3")
    assert job.baseline_run() is None
    named = check_parameters({"profile": "tiny", "run_name": "mine"}, "mild")
    assert named.run_name_for() == "mine" and named.run_name_for(recipes.hot()) == "hot-tiny-seed17"


def test_results_find_the_lab_baseline_without_dice(tmp_path, scenes_root):
    from segkit.teaching.notebooks import Results
    from segkit.teaching.recipe_editor import RecipeEditor

    job = check_parameters({"profile": "tiny", "save_folder": str(tmp_path), "data_root": str(scenes_root),
                            "duration": "2ba"}, "baseline")
    assert Results(job).ce_only_baseline() is None
    editor = RecipeEditor("baseline")  # notebook 00's lab, the Dice switch off
    editor.set("dice", False)
    trained = job.train(editor.recipe)
    found = Results(job).ce_only_baseline()
    assert found is not None and found.folder == trained.run.folder
    assert found.info["recipe"]["ce_weight"] == 1.0 and found.info["recipe"]["dice_weight"] == 0.0


def test_start_reads_the_notebook_namespace():
    namespace = {"__name__": "__main__", "In": [""], "Out": {}, "_i1": "", "get_ipython": print,
                 "profile": "tiny", "seed": 5, "job_like_object": object()}
    job = notebooks.start(namespace, "hot")
    assert isinstance(job, Job) and job.profile == "tiny" and job.seed == 5


@pytest.mark.slow
def test_more_than_one_process_trains_through_the_launcher(tmp_path, scenes_root, kernel_env):
    """The gpus > 1 path, run on CPU processes (DDP over gloo): output streamed, curves from metrics.json."""
    job = Job(recipe=recipes.baseline(), profile="tiny", data_root=str(scenes_root), duration="2ba", gpus=2,
              save_folder=str(tmp_path))
    result = job.train()
    assert result.run.status == "finished" and result.run.info["world_size"] == 2
    assert (tmp_path / "baseline-tiny-seed17-2ba" / "recipe.yaml").is_file()


def test_release_memory_frees_a_large_value_and_keeps_what_the_checks_read(capsys):
    """A 200 MB tensor held in a notebook's globals is freed and the kernel's resident memory drops by it;
    the parameters, the modules and the small values a check cell reads stay."""
    import torch

    if notebooks.resident_bytes() is None:
        pytest.skip("resident memory is read from /proc (Linux)")
    held = torch.ones(50_000_000)  # 200 MB of float32, written, so resident
    namespace = {"profile": "tiny", "torch": torch, "job": check_parameters({"profile": "tiny"}, "mild"),
                 "draws": torch.zeros(100_000), "held": held}
    del held
    before = notebooks.resident_bytes()
    notebooks.release_memory(namespace)
    after = notebooks.resident_bytes()
    assert sorted(namespace) == ["draws", "job", "profile", "torch"]
    assert before - after > 150e6, (before, after)
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and "after freeing held and the output cache" in line
    assert "shut this kernel down (Kernel > Shut Down Kernel) when you leave this notebook" in line


def test_the_baseline_notebook_draws_the_budget_curve_and_trains_the_ce_only_baseline(main_job):
    """00's knee cell trains the baseline compressed into a share of its steps (here 1 of the smoke run's 2)
    and draws final mIoU against budget; its CE-only cell leaves the run that 04 measures the claims against."""
    out, outcomes = main_job
    book = nbformat.read(next(o for o in outcomes if o.notebook == "00_baseline").output, as_version=4)
    figure = next(o for o in cell_with(book, "job.budget_curve()").outputs if PLOTLY_MIME in o.get("data", {}))
    curve = figure["data"][PLOTLY_MIME]["data"][0]
    compressed = Run.load(out / "runs" / "baseline-tiny-seed17-1ba")
    full = Run.load(out / "runs" / "baseline-tiny-seed17-2ba")
    assert compressed.status == "finished" and compressed.history[-1]["step"] == 1
    assert list(curve["x"]) == [0.5, 1.0]
    assert list(curve["y"]) == [compressed.final["miou"], full.final["miou"]]
    ce_only = [run for name, run in find_runs(out / "runs").items() if name.startswith("custom-")]
    assert len(ce_only) == 1 and ce_only[0].info["recipe"]["dice_weight"] == 0
    assert ce_only[0].info["recipe"]["ce_weight"] == 1.0 and ce_only[0].status == "finished"

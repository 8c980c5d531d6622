"""The notebooks' side of segkit: their parameters, training from a notebook, and running them all.

Every notebook starts with a setup cell (it installs segkit on Colab, and does nothing elsewhere), then
one papermill ``parameters`` cell of literals, and its next code cell is

    job = notebooks.start(globals(), recipe="hot")

which makes any ``SegkitError`` in the notebook show as one line, checks every parameter (an
unknown name or a wrong type stops the notebook there, with one line naming the parameter),
and returns a ``Job``. ``job.train()`` then trains the notebook's recipe with live curves: in
the kernel on one device, or, with ``gpus`` above 1, through Composer's launcher (one process
per GPU, DDP), with the curves read from the run's ``metrics.json`` as it grows.

Notebook 04 compares the four runs; its cell after the parameters is ``notebooks.start_results(globals())``,
which takes the same parameters plus ``run_folders`` and returns a ``Results``.

Every notebook ends with ``notebooks.release_memory(globals())``: it frees what the notebook's own
cells hold and prints the kernel's memory, with the advice to shut the kernel down when the learner
leaves the notebook (most of a kernel's memory is the libraries it imported, which only that frees).

The main job that runs the notebooks headless, ``segkit notebooks``, is ``segkit.teaching.headless``.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import json
import math
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segkit import recipes
from segkit.data import check_data_root
from segkit.errors import ConfigError, DataError, RunError, SegkitError, one_line
from segkit.profiles import Profile, get_profile
from segkit.recipes import Recipe
from segkit.runs import METRICS_FILE, Run, RunResult, check_run_name
from segkit.spec import DEFAULT_PROFILE, DEFAULT_SAVE_FOLDER, DEFAULT_SEED, Launch, RunSpec, plan_launch, run_spec

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from segkit.teaching.plots import LiveCurves
    from segkit.teaching.tables import Table

#: The notebooks of the kit that train, in the order they run, and the recipe each one trains.
NOTEBOOKS = {"00_baseline": "baseline", "01_mild": "mild", "02_medium": "medium", "03_hot": "hot"}
#: The notebook that compares their runs, run after them.
RESULTS_NOTEBOOK = "04_results"
#: Where the notebooks are in a checkout of the repository.
NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
#: Names IPython itself puts in a notebook's namespace (they are not parameters).
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}
_LITERALS = (str, int, float, bool, type(None), list, dict, tuple)


PRETRAINING = {"imagenet": "ImageNet", "scenes": "generated scenes (segkit.pretraining)", None: "none (random)"}

#: Budgets of the baseline's budget curve, as shares of its steps: mild trains about a fifth (25 of 128 epochs).
BUDGET_SHARES = (0.2, 0.4, 1.0)


def ce_only_recipe() -> Recipe:
    """The baseline as the recipe lab's Dice switch turns it off: cross-entropy alone, at weight 1 (named
    ``custom``, as the lab names an edit, so that the lab's run and notebook 00's are the same run)."""
    switch = recipes.SWITCHES["dice"]
    return dataclasses.replace(recipes.baseline(), name="custom", dice_weight=switch.off, **switch.off_settings)


@dataclass(frozen=True)
class Job:
    """A notebook's training job: its recipe and its parameters (the ``parameters`` cell).

    The fields after ``recipe`` are exactly the notebook parameters, with their defaults.
    """

    recipe: Recipe  # the recipe the notebook teaches, at the reference scale
    profile: str = DEFAULT_PROFILE  # cpu: minutes on 2 cores; a100: the reference job (needs data_root); tiny: seconds
    data_root: str = ""  # an extracted ADEChallengeData2016 folder; "" = the built-in scenes
    duration: str = ""  # overrides the recipe's length, e.g. "2ba" or "10ep"; "" = the recipe's, scaled
    gpus: int = 0  # processes per machine, one per GPU: 0 = every visible GPU (1 on a CPU profile); >1 = DDP
    run_name: str = ""  # "" = RECIPE-PROFILE-seedSEED (plus -DURATION when duration is set)
    save_folder: str = DEFAULT_SAVE_FOLDER  # where run folders go; notebooks 01-03 find the baseline run here
    seed: int = DEFAULT_SEED  # the reference's seed
    weights: str = ""  # backbone init: "" = the profile's (scenes-pretrained on cpu, ImageNet on a100); "none"; a .pth
    nodes: int = 1  # machines training together (docs/distributed.md); each runs this notebook
    node_rank: int = 0  # this machine's index, 0 .. nodes - 1
    master_addr: str = "127.0.0.1"  # node 0's address, the same on every node
    master_port: int = 0  # a free port on node 0, the same on every node; 0 = a random one (one machine)

    @property
    def settings(self) -> Profile:
        return get_profile(self.profile)

    @property
    def launch(self) -> Launch:
        """How many processes train, on which machines (``segkit.spec.plan_launch``)."""
        return plan_launch(self.settings, self.gpus, self.nodes, self.node_rank, self.master_addr, self.master_port)

    def spec(self, recipe: Recipe | None = None) -> RunSpec:
        """The run this job trains for ``recipe`` (the notebook's own by default)."""
        return run_spec(recipe or self.recipe, self.profile, self.data_root or None, self.seed,
                        self.duration or None, self.weights or None)

    @property
    def data_folder(self) -> Path:
        """The data folder itself (the built-in scenes are generated on first use)."""
        return self.spec().data_folder()

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch on this job's data (last partial batch dropped)."""
        return max(1, self.spec().steps_per_epoch())

    def run_name_for(self, recipe: Recipe | None = None) -> str:
        """The run folder name for a recipe: the ``run_name`` parameter for the notebook's own recipe,
        else ``RunSpec.run_name`` (an edited recipe is named by a digest of its settings)."""
        recipe = recipe or self.recipe
        if recipe == self.recipe and self.run_name:
            return self.run_name
        return self.spec(recipe).run_name

    def run_folder(self, recipe: Recipe | None = None) -> Path:
        return Path(self.save_folder).expanduser() / self.run_name_for(recipe)

    def total_steps(self, recipe: Recipe | None = None) -> int:
        """Optimizer steps of ``recipe``'s run on this job (the ``duration`` parameter, or the scaled recipe)."""
        duration = self.duration or f"{self.spec(recipe).scaled_recipe().epochs}ep"
        count = int(duration[:-2])
        return count if duration.endswith("ba") else count * self.steps_per_epoch

    def regime_table(self) -> Table:
        """The reference's training problem beside this job's: what differs when a claim does or does not show."""
        from segkit.scenes import CLASS_NAMES
        from segkit.teaching.explain import feature_map_side
        from segkit.teaching.tables import Table

        reference, here = get_profile("a100"), self.settings
        scaled = [self.spec(recipes.baseline()).scaled_recipe(), recipes.baseline()]  # a100 is the reference's scale
        baseline = self.baseline_run()

        def described(profile: Profile, recipe: Recipe, steps_per_epoch: int, data: str, hardware: str,
                      time: str) -> list[str]:
            side = feature_map_side(profile.backbone, profile.output_stride, profile.image_size)
            return [f"{profile.image_size} px", f"{profile.output_stride}: a {side} × {side} feature map",
                    profile.backbone, data, f"{profile.global_batch_size}, lr {recipe.lr:g}",
                    f"{recipe.epochs} epochs, {recipe.epochs * steps_per_epoch:,} steps",
                    PRETRAINING.get(profile.weights, str(profile.weights)), hardware, time]

        scenes = self.data_root == "" and here.default_data == "scenes"
        here_data = (f"{here.scenes_train_images} generated scenes, {len(CLASS_NAMES)} classes" if scenes else
                     f"{self.data_root} ({len(baseline.info['data']['class_names'])} classes)" if baseline else
                     str(self.data_root))
        rows = [[name, published, mine] for name, published, mine in zip(
            ["image size", "output stride", "backbone", "training images, classes", "batch, learning rate",
             "baseline's length", "backbone pretraining", "hardware", "baseline's time"],
            described(reference, scaled[1], recipes.REFERENCE_STEPS_PER_EPOCH, "20,206 ADE20k images, 150 classes",
                      "8xA100", "3.5 h (published)"),
            described(here, scaled[0], self.steps_per_epoch, here_data, "CPU" if here.device == "cpu" else "GPU",
                      f"{baseline.final['wall_time']:.0f} s (your run)" if baseline else "not run yet"),
            strict=True)]
        return Table(["", "reference (a100)", f"here ({here.name})"], rows,
                     caption="The reference's problem and this one",
                     notes=["Notebooks 01-04 come back to this table when a claim does or does not show here. "
                            "The backbone pretraining is ImageNet in the reference; on the cpu profile a ResNet-10 "
                            "pretrained on generated scenes (segkit.pretraining), as nothing is downloaded."])

    def train_ce_only(self, train_missing: bool | None = None) -> RunResult | None:
        """The baseline with cross-entropy alone at weight 1 (the lab's Dice switch off): the baseline the
        article's published gains were apparently measured against. Notebook 04 measures the claims against it.

        A finished run is reused. ``train_missing``: train it if it is missing (None: on a CPU profile, where
        it takes minutes; on a GPU profile it would be another baseline's hours, so only when asked).
        """
        recipe = ce_only_recipe()
        if train_missing if train_missing is not None else self.settings.device == "cpu":
            return self.train(recipe)
        folder = self.run_folder(recipe)
        run = Run.load(folder) if (folder / METRICS_FILE).is_file() else None
        if run is None or run.status != "finished":
            print(f"the CE-only baseline ({folder.name}) is not trained on this {self.profile} job: "
                  f"job.train_ce_only(train_missing=True) trains it (a baseline's time)")
            return None
        return RunResult.of(run, resumed=True)

    def budget_curve(self, train_missing: bool | None = None) -> go.Figure:
        """The baseline's budget curve: final mIoU against training budget, one run per budget in
        ``BUDGET_SHARES`` with the whole schedule (cosine to zero) compressed into it, as Li et al. 2020
        (*Budgeted Training*) measure it; mild's run on it when there is one.

        Finished runs are reused. ``train_missing``: train the missing budgets here (None: on a CPU profile,
        where they take minutes; on a GPU profile they would take hours of the job's GPUs).
        """
        from segkit.engine import train
        from segkit.teaching import explain
        from segkit.teaching.comparison import cost_ratio

        train_missing = self.settings.device == "cpu" if train_missing is None else train_missing
        full_steps, points, missing = self.total_steps(recipes.baseline()), {}, []
        for share in BUDGET_SHARES:
            steps = max(1, round(share * full_steps))
            spec = self.spec(recipes.baseline())
            if steps != full_steps:
                spec = dataclasses.replace(spec, duration=f"{steps}ba")
            # the full budget is the baseline run itself (named by 00's run_name parameter, if given)
            folder = self.run_folder(recipes.baseline()) if steps == full_steps else \
                Path(self.save_folder).expanduser() / spec.run_name
            run = Run.load(folder) if (folder / METRICS_FILE).is_file() else None
            if (run is None or run.status != "finished") and train_missing:
                run = train(spec, run_name=folder.name, save_folder=self.save_folder, print_progress=False,
                            progress_bar=False).run
                print(f"{spec.run_name}: {steps} of {full_steps} steps, final mIoU {run.final['miou']:.2f}")
            if run is None or run.status != "finished":
                missing.append(f"{spec.run_name} ({steps} steps)")
                continue
            points[steps / full_steps] = run
        if missing:
            print(f"not trained yet: {', '.join(missing)}; job.budget_curve(train_missing=True) trains them")
        mild = self.finished_runs().get(self.spec(recipes.mild()).run_name)
        full = points.get(1.0)
        mild_point = (cost_ratio(full, mild, "passes"), mild.final["miou"]) if mild and full else None
        return explain.budget_curve_figure({share: run.final["miou"] for share, run in points.items()}, mild_point)

    def baseline_run(self) -> Run | None:
        """The finished baseline run of the same profile, seed and duration in ``save_folder``, if any."""
        folder = Path(self.save_folder).expanduser() / self.spec(recipes.baseline()).run_name
        if not (folder / METRICS_FILE).is_file():
            return None
        run = Run.load(folder)
        return run if run.status == "finished" and run.history else None

    def recipe_table(self, recipe: Recipe | None = None, changes_only: bool = False) -> Table:
        """The recipe against the baseline, with a column for how it runs on this job's profile."""
        from segkit.teaching.tables import recipe_table

        return recipe_table(recipe or self.recipe, self.settings, self.steps_per_epoch,
                            changes_only=changes_only)

    def train(self, recipe: Recipe | None = None, run_name: str | None = None,
              evaluate_raw_weights: bool = False) -> RunResult:
        """Train (or resume, or reuse a finished run) with live curves; returns a ``segkit.runs.RunResult``.

        With more than one process (``gpus``, ``nodes``) training runs through Composer's launcher,
        not in this process.
        ``evaluate_raw_weights``: with EMA, also evaluate the weights SGD trains (``miou_raw``); in this
        process only (the launcher's runs do not record it).
        """
        from segkit.teaching.plots import LiveCurves

        recipe = recipe or self.recipe
        run_name = run_name or self.run_name_for(recipe)
        reference = None if recipe.name == "baseline" else self.baseline_run()
        curves = LiveCurves(run_name, recipe.name, reference, self.steps_per_epoch)
        curves.show()
        if self.launch.world_size > 1:
            result = self._train_with_launcher(recipe, run_name, curves)
        else:
            from segkit.engine import train

            result = train(self.spec(recipe), run_name=run_name, save_folder=self.save_folder,
                           on_progress=curves, progress_bar=False, evaluate_raw_weights=evaluate_raw_weights)
        curves.finish(result.run)
        print(f"{run_name}: mIoU {result.miou:.2f}, pixel accuracy {result.pixel_accuracy:.2f}, "
              f"trained for {result.wall_time:.0f} s; run folder {result.folder}")
        return result

    def _train_with_launcher(self, recipe: Recipe, run_name: str, curves: LiveCurves) -> RunResult:
        folder = Path(self.save_folder).expanduser() / run_name
        folder.mkdir(parents=True, exist_ok=True)
        recipe_file = folder / "recipe.yaml"
        recipe_file.write_text(recipe.to_yaml())
        argv = self.spec(recipe).train_argv(run_name, self.save_folder, str(recipe_file))
        seen = 0

        def show(line: str) -> None:  # rank 0 prints a line per evaluation: poll the history then
            nonlocal seen
            print(line, end="", flush=True)
            seen = feed_history(folder, curves, seen)

        status = self.launch.run(argv, on_line=show)
        feed_history(folder, curves, seen)
        if status != 0:
            raise RunError(f"training through Composer's launcher failed (exit status {status}); "
                           f"its output is above")
        return RunResult.of(Run.load(folder), resumed=False)

    def results(self, result: RunResult) -> Table:
        """The trained run against the baseline run (when there is one) and the published numbers."""
        from segkit.teaching.tables import results_table

        baseline = None if result.run.recipe == "baseline" else self.baseline_run()
        table = results_table(result.run, baseline)
        if baseline is None and result.run.recipe != "baseline":
            expected = self.spec(recipes.baseline()).run_name
            table.notes.append(
                f"No baseline run in {self.save_folder} to compare with on this machine: run "
                f"00_baseline.ipynb with the same parameters first (it writes {expected}), then this one "
                f"again; the finished {result.run.name} is reused, not retrained.")
        return table

    def finished_runs(self) -> dict[str, Run]:
        """Every finished run in ``save_folder`` of this job's profile and seed, by name."""
        from segkit.runs import find_runs

        return {name: run for name, run in find_runs(self.save_folder).items()
                if run.status == "finished" and run.info.get("profile", {}).get("name") == self.profile
                and run.info.get("seed") == self.seed}

    def sharpness(self, result: RunResult) -> go.Figure:
        """SAM's target measured: the loss increase at medium's rho around this run's and the baseline's
        weights (``segkit.teaching.measurements.sharpness``)."""
        from segkit.teaching import explain, measurements

        rho = self.spec(recipes.medium()).scaled_recipe().sam_rho
        baseline = self.baseline_run()
        folders = {**({"baseline": baseline.folder} if baseline else {}), result.run.name: result.folder}
        measured = {name: measurements.sharpness(folder, rho) for name, folder in folders.items()}
        return explain.sharpness_figure(measured, rho)

    def fit_gaps(self) -> go.Figure:
        """Training against validation mIoU of every finished run of this profile and seed
        (``segkit.teaching.measurements.fit_gap``): the runs with and without MixUp side by side."""
        from segkit.teaching import explain, measurements

        runs = self.finished_runs()
        return explain.fit_gap_figure({name: measurements.fit_gap(run.folder) for name, run in runs.items()})

    def comparison(self, result: RunResult) -> go.Figure:
        """mIoU against time and epochs, of this run and the baseline run (when there is one)."""
        from segkit.teaching.plots import comparison_figure

        baseline = None if result.run.recipe == "baseline" else self.baseline_run()
        runs = [baseline, result.run] if baseline is not None else [result.run]
        return comparison_figure(runs, title=f"{result.run.name} against the baseline on this machine"
                                 if baseline else f"{result.run.name}")


@dataclass(frozen=True)
class Results:
    """Notebook 04's job: which runs it compares.

    ``run_folders`` (comma-separated) names the runs; empty, they are the four recipes' runs of the
    training notebooks with the same parameters, found in ``save_folder``.
    """

    job: Job  # the training notebooks' parameters: profile, seed, duration, save_folder
    run_folders: str = ""  # comma-separated run folders; "" = the runs of notebooks 00-03

    def runs(self) -> dict[str, Run]:
        """The finished runs, by recipe, in the recipes' order.

        Raises:
            DataError: a named folder is not a finished run, or no run was found at all.
        """
        if self.run_folders:
            found = {}
            for text in self.run_folders.split(","):
                folder = Path(text.strip()).expanduser()
                if not (folder / METRICS_FILE).is_file():
                    raise DataError(f"parameter run_folders: {folder} is not a run folder (it has no "
                                    f"{METRICS_FILE}); give folders written by segkit train or the notebooks")
                run = Run.load(folder)
                if run.status != "finished" or not run.history:
                    raise DataError(f"parameter run_folders: {folder} has not finished training; finish it "
                                    f"(run its notebook or segkit train again) or leave it out")
                found[run.recipe if run.recipe not in found else run.name] = run
            return found
        trained = {recipe: self.finished_run(recipes.get(recipe)) for recipe in NOTEBOOKS.values()}
        found = {recipe: run for recipe, run in trained.items() if run is not None}
        if not found:
            raise DataError(f"no finished run of profile {self.job.profile!r}, seed {self.job.seed} in "
                            f"{self.job.save_folder}; run notebooks 00-03 with the same parameters first, or "
                            f"name run folders in the parameter run_folders")
        return found

    def finished_run(self, recipe: Recipe) -> Run | None:
        """The finished run of ``recipe`` with these parameters in ``save_folder``, if there is one."""
        folder = Path(self.job.save_folder).expanduser() / self.job.spec(recipe).run_name
        if not (folder / METRICS_FILE).is_file():
            return None
        run = Run.load(folder)
        return run if run.status == "finished" and run.history else None

    def ce_only_baseline(self) -> Run | None:
        """The finished baseline trained with cross-entropy alone (notebook 00, or its lab with the Dice
        switch off), with these parameters, if there is one."""
        return self.finished_run(ce_only_recipe())


def start_results(namespace: dict[str, Any]) -> Results:
    """Check notebook 04's parameters (its globals) and return its ``Results``; as ``start``."""
    one_line_errors()
    given = notebook_values(namespace)
    run_folders = given.pop("run_folders", "")
    if not isinstance(run_folders, str):
        raise ConfigError(f"parameter run_folders must be a string of comma-separated folders, got {run_folders!r}")
    return Results(check_parameters(given, "baseline"), run_folders)


def check(question: str, value: Any, expected: float, tolerance: float = 0.01) -> bool:
    """A self-check: print whether ``value`` (the learner's) matches ``expected`` (segkit's) within a
    relative ``tolerance``, without showing the expected value.

    A ``value`` still left as ``...`` (the empty answer a "Check yourself" cell starts with) prints
    one line saying so, neither right nor wrong.

    Example:
        >>> check("2 + 2", 4.0, 4)
        ✓ 2 + 2: 4 is right
        True
        >>> check("2 + 2", 5, 4)
        ✗ 2 + 2: 5 is not it yet; see the hint, then run the cell again
        False
        >>> check("2 + 2", ..., 4)
        … 2 + 2: your answer is still empty; replace the ... with your computation, then run the cell again
        False
    """
    if value is Ellipsis:
        print(f"… {question}: your answer is still empty; replace the ... with your computation, "
              f"then run the cell again")
        return False
    try:
        right = value is not None and math.isclose(float(value), float(expected), rel_tol=tolerance, abs_tol=1e-9)
    except (TypeError, ValueError):  # not a number: a string, a list, a tensor of many values
        right = False
    print(f"✓ {question}: {value:g} is right" if right else
          f"✗ {question}: {value!r} is not it yet; see the hint, then run the cell again")
    return right


#: A value in a notebook's globals this large is data or a model, not an answer a check cell reads (the
#: largest the notebooks' own cells keep, 100,000 mixing weights, is 0.8 MB).
LARGE_BYTES = 16 * 2**20


def release_memory(namespace: dict[str, Any]) -> None:
    """Free what a finished notebook holds; print the kernel's memory, and the advice to shut it down.

    Drops IPython's output cache (``Out``, ``_``: every figure and table a cell returned) and the large
    values of the notebook's globals (tensors, arrays and modules of ``LARGE_BYTES`` or more), collects
    garbage and hands the freed heap back to the system (glibc's ``malloc_trim``). The small objects the
    check cells read (``job``, ``result``) stay, and so do the widgets shown above (ipywidgets holds them).
    Most of a kernel's memory is the libraries it imported (PyTorch, Composer): only shutting the kernel
    down frees that.

    Args:
        namespace: the notebook's ``globals()``.

    Example:
        >>> import numpy as np
        >>> namespace = {"data": np.ones(2**22), "answer": 4.0}
        >>> release_memory(namespace)  # doctest: +ELLIPSIS
        memory of this kernel: ... GiB before, ... GiB after freeing data and the output cache; shut ...
        >>> sorted(namespace)
        ['answer']
    """
    before = resident_bytes()
    large = [name for name, value in namespace.items()
             if not name.startswith("_") and name not in _IPYTHON_NAMES and held_bytes(value) >= LARGE_BYTES]
    for name in large:
        del namespace[name]
    with contextlib.suppress(ImportError):
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None and shell.user_ns is namespace:
            shell.displayhook.flush()  # Out, _, __, ___ and _1, _2 ...: what %reset out clears
            shell.last_execution_result = None
    gc.collect()
    trim_heap()
    after = resident_bytes()
    freed = f"freeing {', '.join(large)} and the output cache" if large else "freeing the output cache"
    print(f"memory of this kernel: {gib(before)} before, {gib(after)} after {freed}; shut this kernel down "
          f"(Kernel > Shut Down Kernel) when you leave this notebook: only that frees the rest")


def held_bytes(value: Any) -> int:
    """The bytes a tensor, an array or a module's parameters and buffers hold; 0 for anything else."""
    torch = sys.modules.get("torch")  # not imported here: a value cannot be a tensor unless torch is loaded
    if torch is not None and isinstance(value, torch.Tensor):
        return value.untyped_storage().nbytes() if value.device.type == "cpu" else 0
    if torch is not None and isinstance(value, torch.nn.Module):
        return sum(held_bytes(tensor) for tensor in (*value.parameters(), *value.buffers()))
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        return value.nbytes
    return 0


def resident_bytes() -> int | None:
    """This process's resident memory (``VmRSS`` of /proc/self/status), or None where there is none (not Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return None


def trim_heap() -> None:
    """Hand the C heap's free pages back to the system: glibc's ``malloc_trim(0)``; nothing without glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def gib(size: int | None) -> str:
    return "unknown" if size is None else f"{size / 2**30:.2f} GiB"


def feed_history(folder: Path, curves: LiveCurves, seen: int) -> int:
    """Pass the evaluations in a run's metrics.json after the first ``seen`` to ``curves``; count them."""
    try:
        history = json.loads((folder / METRICS_FILE).read_text()).get("history", [])
    except (OSError, json.JSONDecodeError):
        return seen
    for entry in history[seen:]:
        curves("eval", entry)
    return max(seen, len(history))


# --- parameters -------------------------------------------------------------------------------

#: The parameters of every notebook and their defaults.
PARAMETERS = {f.name: f.default for f in fields(Job) if f.name != "recipe"}
_TYPE_NAMES = {str: "a string", int: "an integer"}


def start(namespace: dict[str, Any], recipe: str | Recipe) -> Job:
    """Check a notebook's parameters (its globals) and return its ``Job``.

    Also makes any ``SegkitError`` raised later in the notebook show as one line.

    Args:
        namespace: the notebook's ``globals()``, after the parameters cell (and papermill's injected one).
        recipe: the recipe the notebook trains.

    Raises:
        ConfigError, DataError: an unknown, ill-typed or impossible parameter, named in the message.
    """
    one_line_errors()
    return check_parameters(notebook_values(namespace), recipe)


def notebook_values(namespace: dict[str, Any]) -> dict[str, Any]:
    """The parameter values in a notebook's globals: the literals that are not IPython's own."""
    return {name: value for name, value in namespace.items()
            if not name.startswith("_") and name not in _IPYTHON_NAMES and isinstance(value, _LITERALS)}


def check_parameters(values: dict[str, Any], recipe: str | Recipe) -> Job:
    """A ``Job`` from parameter values, each checked; the first problem raises one line naming it.

    Example:
        >>> check_parameters({"profile": "tiny", "seed": 3}, "mild").run_name_for()
        'mild-tiny-seed3'
        >>> check_parameters({"seed": "abc"}, "mild")
        Traceback (most recent call last):
        ...
        segkit.errors.ConfigError: parameter seed must be an integer, got 'abc' (a string); for example ...
    """
    unknown = sorted(set(values) - set(PARAMETERS))
    if unknown:
        raise ConfigError(f"unknown parameter {unknown[0]!r}; the parameters are {', '.join(PARAMETERS)}")
    for name, value in values.items():
        expected = type(PARAMETERS[name])
        if type(value) is not expected:
            example = (f"for example -p {name} {PARAMETERS[name]}" if expected is int else
                       f"write it in quotes in the parameters cell, or pass it with -r {name} VALUE")
            raise ConfigError(f"parameter {name} must be {_TYPE_NAMES[expected]}, got {value!r} "
                              f"({_TYPE_NAMES.get(type(value), type(value).__name__)}); {example}")
    job = Job(recipe=recipe if isinstance(recipe, Recipe) else recipes.get(recipe), **values)
    check_job(job)
    return job


def check_job(job: Job) -> None:
    """Check ranges, and that the job can run here (data present, GPUs there); raise one line if not."""
    get_profile(job.profile)  # an unknown profile raises here
    if not 0 <= job.seed < 2**32:
        raise ConfigError(f"parameter seed must be in [0, 2**32), got {job.seed}")
    if job.run_name:
        check_run_name(job.run_name)
    if not job.save_folder:
        raise ConfigError("parameter save_folder is empty; give a folder for run folders, e.g. 'runs'")
    if job.gpus < 0:
        raise ConfigError(f"parameter gpus must be 0 (every visible GPU) or more, got {job.gpus}")
    job.launch  # noqa: B018 (checks gpus, nodes and ranks, against this machine and the global batch)
    try:
        job.spec()  # duration, weights, and real data for a profile that needs it
    except ConfigError as error:  # the spec names its field; here that field is a notebook parameter
        named = str(error).split(" ", 1)[0] in PARAMETERS
        raise ConfigError(f"parameter {error}" if named else str(error)) from None
    if job.data_root:
        try:
            check_data_root(job.data_root)
        except DataError as error:
            raise DataError(f"parameter data_root: {error}") from None


def one_line_errors() -> None:
    """In IPython, show every ``SegkitError`` as one line, ``ErrorName: message``, without a traceback."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    def show(shell, kind, error, traceback, tb_offset=None) -> list[str]:
        # IPython calls this instead of showing the error; showtraceback() shows it (and ipykernel
        # records it as the cell's error output) with the traceback that _render_traceback_ gives.
        lines = [f"{kind.__name__}: {one_line(error)}"]
        error._render_traceback_ = lambda: lines
        shell.showtraceback((kind, error, traceback))
        return lines

    shell.set_custom_exc((SegkitError,), show)


def cli_values(parameters: dict[str, Any]) -> dict[str, Any]:
    """Parameter values from a command line typed as papermill's ``-p`` types them: ints, floats,
    True/False/None, else text.

    Example:
        >>> cli_values({"seed": "3", "duration": "2ba", "gpus": 2})
        {'seed': 3, 'duration': '2ba', 'gpus': 2}
    """
    def typed(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[value]
        for kind in (int, float):
            with contextlib.suppress(ValueError):
                return kind(value)
        return value

    return {name: typed(value) for name, value in parameters.items()}

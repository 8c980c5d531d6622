"""The layers of docs/architecture.md, enforced: Composer stays in the engine (engine, algorithms, probes), the
library never imports the teaching layer, imports only go down the layers, and no two modules import each
other (directly or around a loop)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "segkit"

#: Each module's layer, lowest first (docs/architecture.md draws them). A module may import its own
#: layer and those below it, never one above. Layers 0-4 are the library (``segkit``), 5-6 the teaching
#: layer (``segkit.teaching``), which the library never imports.
LAYERS = {
    "errors": 0, "cache": 0, "processes": 0,
    # data, model and loss: plain PyTorch
    "transforms": 1, "data": 1, "scenes": 1, "model": 1, "losses": 1, "metrics": 1, "functional": 1,
    "checkpoints": 1, "pretraining": 1, "devices": 1,
    # what a run is: recipes, profiles and the spec that joins them
    "profiles": 2, "recipes": 2, "spec": 2,
    # the run folder: written by the engine, read by everything above
    "runs": 3,
    # the engine (Composer) and inference (plain PyTorch); the command line and the package's API
    "algorithms": 4, "engine": 4, "inference": 4, "probes": 4, "cli": 4, "__main__": 4, "__init__": 4,
    # the teaching layer: plain-Python helpers, then views of runs (figures, tables, pictures, widgets)
    "teaching.__init__": 5, "teaching.colab": 5, "teaching.verdicts": 5, "teaching.comparison": 5,
    "teaching.measurements": 5, "teaching.plots": 5, "teaching.tables": 5, "teaching.gallery": 5,
    "teaching.explain": 5, "teaching.recipe_editor": 5, "teaching.report": 5, "teaching.widgets": 5,
    "teaching.pictures": 5, "teaching.pages": 5, "teaching.results": 5, "teaching.classroom": 5,
    # the notebooks' session and the headless runner
    "teaching.notebooks": 6, "teaching.headless": 6, "teaching.papermill_engine": 6,
}
LIBRARY_TOP = 4
COMPOSER_MODULES = {"engine", "algorithms", "probes"}


def imports(path: Path) -> set[str]:
    """Top-level names imported anywhere in a module (function bodies too), except under TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    skipped = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
               and getattr(block.test, "id", None) == "TYPE_CHECKING" for node in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module in ("segkit", "segkit.teaching"):  # packages: their modules are what is imported
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def segkit_imports(path: Path) -> set[str]:
    """The segkit modules imported, by their names in LAYERS ("engine", "teaching.plots")."""
    found = {name.removeprefix("segkit.") for name in imports(path) if name.startswith("segkit.")}
    return {"teaching.__init__" if name == "teaching" else name for name in found}


def module_path(module: str) -> Path:
    return PACKAGE / f"{module.replace('.', '/')}.py"


MODULES = sorted(str(path.relative_to(PACKAGE).with_suffix("")).replace("/", ".") for path in PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    assert set(MODULES) == set(LAYERS)


@pytest.mark.parametrize("module", MODULES)
def test_only_the_engine_algorithms_and_probes_import_composer(module):
    uses_composer = any(name.split(".")[0] == "composer" for name in imports(module_path(module)))
    assert uses_composer == (module in COMPOSER_MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_imports_go_down_the_layers(module):
    upward = {name for name in segkit_imports(module_path(module))
              if name in LAYERS and LAYERS[name] > LAYERS[module]}
    assert not upward, f"segkit.{module} (layer {LAYERS[module]}) imports {upward} from a higher layer"


@pytest.mark.parametrize("module", [module for module in MODULES if LAYERS.get(module, 99) <= LIBRARY_TOP])
def test_the_library_never_imports_the_teaching_layer(module):
    assert not {name for name in segkit_imports(module_path(module)) if name.startswith("teaching")}


def test_no_import_cycle():
    graph = {module: segkit_imports(module_path(module)) - {"__init__", "teaching.__init__"} for module in MODULES}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == "open":
                raise AssertionError("import cycle: " + " -> ".join([*path, module, imported]))
            if imported not in state:
                visit(imported, [*path, module])
        state[module] = "done"

    for module in MODULES:
        if module not in state:
            visit(module, [])


def test_views_and_recipes_do_not_load_composer():
    code = ("import sys, segkit.teaching.gallery, segkit.teaching.explain, segkit.teaching.widgets, segkit.recipes, "
            "segkit.inference; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'composer'))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_checks_catch_a_planted_violation(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from composer import Trainer\n    from segkit.cli import main\n")
    assert "composer" in imports(planted) and segkit_imports(planted) == {"cli"}
    planted.write_text("from segkit.teaching import plots\nimport segkit.teaching.tables\n")
    assert segkit_imports(planted) == {"teaching.__init__", "teaching.plots", "teaching.tables"}


def test_the_architecture_page_draws_every_module_and_counts_them():
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    library = [module for module in MODULES if "." not in module]
    teaching = [module for module in MODULES if module.startswith("teaching.")]
    assert f"`segkit/` ({len(library)} modules" in page and f"`segkit/teaching/` ({len(teaching)} modules" in page
    drawn = page.split("```")[1]
    missing = [module for module in MODULES if not module.endswith("__init__") and module != "__main__"
               and f"{module.split('.')[-1]}.py" not in drawn]
    assert not missing, missing

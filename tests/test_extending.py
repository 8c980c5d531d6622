"""Extending the kit as docs/architecture.md says: a fifth recipe added in one place, for real.

A copy of the package gets one more recipe function and one line in ``RECIPES`` (nothing else),
and then imports, lists it on the command line, builds its table and its figures, and trains it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

from tests.conftest import REPO, subprocess_env

SPICY = '''

def spicy() -> Recipe:
    """hot with MixUp twice as strong: a recipe an instructor adds."""
    return dataclasses.replace(hot(), name="spicy", mixup_alpha=1.0)


RECIPES["spicy"] = spicy
'''

CHECK = textwrap.dedent('''
    import sys
    import segkit
    from segkit import plots, recipes, tables
    from segkit.cli import main

    assert segkit.__file__.startswith(sys.argv[1]), segkit.__file__
    assert list(recipes.RECIPES)[-1] == "spicy"
    main(["recipes"])
    print(tables.recipe_table(recipes.get("spicy"), "tiny", 2))
    assert plots.recipe_color("spicy") not in (plots.OTHER_COLOR, plots.recipe_color("hot"))
    result = segkit.train("spicy", data=sys.argv[2], profile="tiny", duration="2ba", save_folder=sys.argv[3],
                          print_progress=False)
    assert result.run.recipe == "spicy" and result.run.status == "finished"
    figure = plots.comparison_figure([result.run])
    assert figure.data[0].line.color == plots.recipe_color("spicy")
    print(tables.results_table(result.run, None))
    print("trained", result.run.name)
''')


def test_a_fifth_recipe_is_one_function_and_one_line(tmp_path, scenes_root):
    copy = tmp_path / "kit"
    shutil.copytree(REPO / "segkit", copy / "segkit", ignore=shutil.ignore_patterns("__pycache__"))
    recipes_file = copy / "segkit" / "recipes.py"
    recipes_file.write_text(recipes_file.read_text() + SPICY)
    done = subprocess.run([sys.executable, "-c", CHECK, str(copy), str(scenes_root), str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**subprocess_env(), "PYTHONPATH": str(copy)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    listing = done.stdout.splitlines()
    assert any(line.startswith("spicy") and "mixup_alpha=1.0" in line for line in listing)
    assert "trained spicy-tiny-seed17-2ba" in done.stdout
    assert (tmp_path / "runs" / "spicy-tiny-seed17-2ba" / "model.pt").is_file()

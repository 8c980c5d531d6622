"""The main job's summary page: its content, that it is self-contained, and that a browser draws it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from segkit.runs import Run
from segkit.teaching.report import Outcome, summary_html, write_summary
from tests.conftest import skip_or_fail


def fake_run(name: str, recipe: str, miou: list[float]) -> Run:
    history = [{"epoch": i + 1, "step": 2 * (i + 1), "wall_time": 10.0 * (i + 1), "miou": value}
               for i, value in enumerate(miou)]
    info = {"recipe": {"name": recipe}, "status": "finished", "profile": {"name": "cpu"},
            "data": {"root": "/data/scenes"}, "seed": 17}
    return Run(folder=Path("/runs") / name, info=info, history=history)


def outcomes(folder: Path) -> list[Outcome]:
    return [
        Outcome("00_baseline", folder / "00_baseline.ipynb", 80.0,
                fake_run("baseline-cpu-seed17", "baseline", [10.0, 20.0])),
        Outcome("01_mild", folder / "01_mild.ipynb", 30.0, fake_run("mild-cpu-seed17", "mild", [21.0])),
        Outcome("02_medium", folder / "02_medium.ipynb", 5.0, None,
                "notebook 02_medium.ipynb failed in cell In [5] (RunError: disk full)"),
    ]


def test_summary_page_compares_the_runs_and_links_the_notebooks(tmp_path):
    page = summary_html(outcomes(tmp_path), tmp_path)
    assert "Profile <b>cpu</b>" in page and "seed 17" in page
    assert "Like for like: every run here, the baseline included, trains with\ncross-entropy plus Dice" in page
    # The results table: final mIoU against the baseline run, and the published numbers.
    assert "<td style='text-align:left;'>mild-cpu-seed17</td>" in page
    assert "+1.00" in page and "45.48" in page and "49.32" not in page
    assert "Here: mild reached the baseline&#x27;s final mIoU 20.00 after 10 s, 2.0x sooner" in page
    # Links to the executed notebooks, relative to the page; the failure in one line.
    assert "href='01_mild.ipynb'" in page and "RunError: disk full" in page
    # Self-contained: plotly.js is inside the page, nothing is loaded from elsewhere.
    assert not re.findall(r"<script[^>]*\bsrc=", page) and len(page) > 1_000_000


def test_summary_page_without_runs(tmp_path):
    failed = Outcome("00_baseline", tmp_path / "00_baseline.ipynb", 3.0, None, "failed")
    page = summary_html([failed], tmp_path)
    assert "No run finished" in page and "Plotly" not in page


def test_browser_draws_the_figure(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        skip_or_fail("no chromium to render the page (Debian: apt-get install -y chromium)")
    page = write_summary(tmp_path / "index.html", outcomes(tmp_path))
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert 'class="main-svg"' in dom  # plotly drew the figure
    assert dom.count('class="scatterlayer') >= 2 and "baseline-cpu-seed17" in dom

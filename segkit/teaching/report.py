"""The summary page of the main job: one self-contained HTML file comparing the recipes' runs.

It holds the comparison figure (mIoU against training time and against epochs), the table of
final results against the baseline run and the reference's published numbers, and links to the
executed notebooks. plotly.js is embedded in the page, so it opens offline, from any folder.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from segkit.runs import Run, atomic_write
from segkit.teaching.plots import comparison_figure
from segkit.teaching.tables import duration_text, summary_table


@dataclass
class Outcome:
    """How one notebook of the main job (``segkit.teaching.headless.run_all``) went."""

    notebook: str  # e.g. "03_hot"
    output: Path  # the executed notebook
    seconds: float  # wall time of the whole notebook
    run: Run | None  # the run it trained, when its folder exists (None for the results notebook)
    error: str | None = None  # one line, when it failed
    page: Path | None = None  # the executed notebook as an HTML page (segkit.teaching.pages)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; }
th { background: #f4f4f4; }
.failed { color: #b00020; }
"""


def notebooks_table(outcomes: Sequence[Outcome], folder: Path) -> str:
    """HTML rows linking each executed notebook and its page, with its status and wall time."""
    rows = []
    for outcome in outcomes:
        link = html.escape(os.path.relpath(outcome.output, folder))
        page = (f"<a href='{html.escape(os.path.relpath(outcome.page, folder))}'>{html.escape(outcome.page.name)}</a>"
                if outcome.page else "")
        status = (f"<span class='failed'>{html.escape(outcome.error)}</span>" if outcome.error
                  else "finished")
        rows.append(f"<tr><td>{page}</td><td><a href='{link}'>{html.escape(outcome.output.name)}</a></td>"
                    f"<td>{status}</td><td>{duration_text(outcome.seconds)}</td></tr>")
    head = ("<tr><th>page (opens in any browser)</th><th>notebook (JupyterLab)</th><th>status</th>"
            "<th>wall time (whole notebook)</th></tr>")
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def summary_html(outcomes: Sequence[Outcome], folder: Path) -> str:
    """The summary page for the outcomes of ``segkit.teaching.headless.run_all``, as one HTML string."""
    runs = [outcome.run for outcome in outcomes if outcome.run is not None and outcome.run.history]
    first = runs[0].info if runs else {}
    profile = first.get("profile", {}).get("name", "?")
    data = first.get("data", {}).get("root", "?")
    total = sum(outcome.seconds for outcome in outcomes)
    if runs:
        figure = comparison_figure(runs, title="Validation mIoU of each recipe's run on this machine")
        plot = figure.to_html(full_html=False, include_plotlyjs=True, default_height="420px")
        results = summary_table(runs).to_html()
    else:
        plot, results = "<p>No run finished, so there is nothing to compare.</p>", ""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>segkit: the recipes compared</title>
<style>{STYLE}</style></head>
<body>
<h1>segkit: baseline, mild, medium and hot, compared</h1>
<p>Profile <b>{html.escape(profile)}</b>, data {html.escape(data)}, seed {first.get('seed', '?')};
written {when}; the notebooks took {duration_text(total)} in all.
Numbers on a small profile are this machine's runs in a regime far from the article's (a smaller model,
image and schedule, 16 classes): they are not the published mIoU and need not move the same way
(<code>docs/recipe-study.md</code> says where they differ). The published numbers need the
<code>a100</code> profile on ADE20k. Like for like: every run here, the baseline included, trains with
cross-entropy plus Dice, as MosaicML's released code does; the article's baseline (45.33) apparently
trained without Dice, so a published gain includes what Dice adds and a gain here does not
(notebook 04 measures the claims against a baseline without Dice too, once notebook 00's lab has
trained it).</p>
<h2>Results</h2>
{results}
{plot}
<h2>Notebooks</h2>
{notebooks_table(outcomes, folder)}
<p>Published numbers: MosaicML, "5x Faster Image Segmentation Training with MosaicML Recipes":
DeepLabV3+ (ResNet-101) on ADE20k, 8xA100, single-scale evaluation, mean of four seeds.</p>
</body></html>
"""


def write_summary(path: str | Path, outcomes: Sequence[Outcome]) -> Path:
    """Write the summary page to ``path`` (atomically) and return the path."""
    path = Path(path)
    page = summary_html(outcomes, path.parent).encode()
    atomic_write(path, lambda file: file.write(page))
    return path

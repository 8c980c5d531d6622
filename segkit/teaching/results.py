"""The four recipes' runs side by side (notebook 04): the article's figure, its claims as measured,
which classes each recipe helps, and evaluation with test-time augmentation.

Every function takes runs keyed by recipe (``{"baseline": Run, "mild": Run, ...}``); any subset
works, and the comparisons with the baseline need its run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import plotly.graph_objects as go

from segkit.inference import TTA_SCALES, evaluate
from segkit.runs import Run
from segkit.teaching import comparison
from segkit.teaching.comparison import CLAIMS, PUBLISHED, study_results
from segkit.teaching.plots import recipe_color
from segkit.teaching.tables import Table

#: mmsegmentation's DeepLabV3+ ResNet-101 (output stride 8) on ADE20k at 512x512, batch 16:
#: mIoU single-scale / multi-scale with flip, by schedule (configs/deeplabv3plus/README.md).
MMSEG_PUBLISHED = {"80k iterations": (44.60, 46.06), "160k iterations": (45.47, 46.35)}


def time_figure(runs: Mapping[str, Run]) -> go.Figure:
    """The article's figure: mIoU against training time, one line per recipe, the published points marked.

    Time is relative to the baseline's training time, so that a laptop's seconds and the reference's
    8xA100 hours share one axis; without a baseline run, the runs' own seconds are used (and the
    published points, which need the ratio, are left out).
    """
    baseline = runs.get("baseline")
    scale = baseline.final["wall_time"] if baseline is not None and baseline.history else None
    unit = "training time / the baseline's" if scale else "training time (s)"
    figure = go.Figure()
    for recipe, run in runs.items():
        _, seconds, miou = run.series("miou")
        figure.add_trace(go.Scatter(x=[s / scale for s in seconds] if scale else seconds, y=miou,
                                    mode="lines+markers", name=f"{recipe}, this run ({run.name})",
                                    line={"color": recipe_color(recipe)}, marker={"size": 5}))
    if scale:
        for recipe in runs:
            published = PUBLISHED.get(recipe)
            if published is None:
                continue
            figure.add_trace(go.Scatter(
                x=[published.hours / PUBLISHED["baseline"].hours], y=[published.miou], mode="markers+text",
                text=[f"{recipe} (published)"], textposition="top center", name=f"{recipe}, published (8xA100)",
                marker={"symbol": "star", "size": 14, "color": recipe_color(recipe),
                        "line": {"color": "#222", "width": 1}}))
    figure.update_layout(title="mIoU against training time (the article's figure, with this machine's runs)",
                         xaxis_title=unit, yaxis_title="validation mIoU (%)", height=440, template="plotly_white",
                         margin={"t": 60, "b": 40, "l": 60, "r": 20})
    return figure


def claims_table(runs: Mapping[str, Run], ce_only: Run | None = None) -> Table:
    """Each recipe's headline claim: as published, as measured on these runs (one seed each), and as the
    kit's study measured it over held-out seeds, with its verdict (``segkit.teaching.verdicts``).

    ``ce_only``: a baseline trained with cross-entropy alone (notebook 00 trains it), as the article's
    baseline apparently was; with it, a last column measures each claim against it too.
    """
    baseline = runs.get("baseline")
    rows = []
    for recipe, claim in CLAIMS.items():
        # for CE + Dice, machine A's 3 seeds rather than B's 2: the first in STUDY wins
        study = {result.baseline: result for result in reversed(study_results(recipe))}
        study_columns = [study[name].verdict().text() for name in ("CE + Dice", "CE only")]
        run = runs.get(recipe)
        if baseline is None or run is None:
            rows.append([recipe, claim.statement, claim.text(claim.published), "no run", "no run", *study_columns]
                        + (["no run"] if ce_only else []))
            continue
        by_passes, by_time = (claim.measure(baseline, run, axis) for axis in ("passes", "wall_time"))
        rows.append([recipe, claim.statement, claim.text(claim.published), claim.text(by_passes),
                     claim.text(by_time), *study_columns]
                    + ([claim.text(claim.measure(ce_only, run, "passes"))] if ce_only else []))
    like_for_like = (["Last column: the same claims, by passes, against your baseline trained with cross-entropy "
                      f"alone ({ce_only.name}), as the article's baseline apparently was."] if ce_only else
                     ["Against a baseline without Dice, as the article's apparently was: notebook 00 trains it "
                      "(segkit notebooks runs that cell); run 00, then this notebook again."])
    return Table(["recipe", "published claim", "published", "here, by passes (1 seed)", "here, by wall time (1 seed)",
                  "kit's study, vs CE + Dice", "kit's study, vs CE only"]
                 + (["here, vs your CE only (passes)"] if ce_only else []),
                 rows, caption="The three claims: published, on your runs, and in the kit's study",
                 notes=["Your runs are one seed each: an anecdote. The same training on another seed moves the "
                        "final mIoU by 0.3 to 1 point (the standard deviation over seeds in the kit's studies), so a "
                        "difference of that size is no verdict.",
                        "The study's columns: mean ± standard deviation over held-out seeds, the 95% t-interval of "
                        "the mean, and the verdict: holds (the interval clears no effect, the published way), "
                        "contradicts (it clears it the other way), inconclusive (it contains no effect) "
                        "(segkit.teaching.verdicts; values per seed in segkit.teaching.comparison.STUDY). With 2 "
                        "seeds the interval is wide: t is 12.7.",
                        "Passes count forward-backward passes (a SAM step makes two), the same on every machine; "
                        "wall time depends on the machine and on what else ran on it (segkit.teaching.comparison).",
                        *like_for_like])


def study_table(recipe: str) -> Table:
    """The kit's study of ``recipe``'s claim: each baseline and machine, the value per held-out seed, and the
    verdict those values support (``segkit.teaching.verdicts``; ``segkit.teaching.comparison.STUDY``)."""
    claim = CLAIMS[recipe]
    rows = [[result.baseline, ", ".join(f"{seed}: {claim.text(value)}" for seed, value in
                                        zip(result.seeds, result.values, strict=True)),
             result.verdict().text(), result.source] for result in study_results(recipe)]
    return Table(["baseline", "per seed", "verdict", "study"], rows,
                 caption=f"{recipe}: {claim.label}, in the kit's study on the cpu profile (published: "
                         f"{claim.text(claim.published)})",
                 notes=["mean ± standard deviation over the seeds, the 95% t-interval of the mean, and what it "
                        "supports: holds (the interval clears no effect the published way), contradicts (it "
                        "clears it the other way), inconclusive (it contains no effect). Machines are kept "
                        "apart: the same seed ends differently on another machine."])


def evaluations(runs: Mapping[str, Run], augmented: bool = False) -> dict[str, dict]:
    """``segkit.inference.evaluate`` of each run on its validation data, by recipe."""
    return {recipe: evaluate(run.folder, augmented=augmented) for recipe, run in runs.items()}


def class_gain_figure(scores: Mapping[str, dict], class_names: list[str], most: int = 30) -> go.Figure:
    """Per-class IoU of each recipe minus the baseline's: which classes each recipe helps.

    Classes absent from a run's labels and predictions are left out; with more than ``most`` classes,
    the ``most`` classes with the largest gain or loss in any recipe are shown, ordered by the baseline's IoU.
    """
    base = scores["baseline"]["iou_per_class"]
    others = [recipe for recipe in scores if recipe != "baseline"]
    gains = {index: [scores[recipe]["iou_per_class"][index] - base[index] for recipe in others]
             for index in range(len(base))}
    present = {index: row for index, row in gains.items() if not any(math.isnan(value) for value in row)}
    shown = sorted(present, key=lambda index: -max(abs(value) for value in present[index]))[:most]
    shown.sort(key=lambda index: -base[index])  # most to least accurate in the baseline
    figure = go.Figure()
    for column, recipe in enumerate(others):
        figure.add_trace(go.Bar(x=[class_names[index] for index in shown],
                                y=[round(present[index][column], 2) for index in shown],
                                name=f"{recipe} - baseline", marker={"color": recipe_color(recipe)}))
    figure.update_layout(barmode="group", height=400, template="plotly_white",
                         title="IoU gain over the baseline, per class (classes from best to worst in the baseline)",
                         yaxis_title="IoU points over the baseline", margin={"t": 60, "b": 80, "l": 60, "r": 20})
    return figure


def augmentation_table(single: Mapping[str, dict], augmented: Mapping[str, dict], profile: str) -> Table:
    """mIoU at one scale against test-time augmentation, per run; on ``a100``, also mmsegmentation's."""
    rows = [[recipe, single[recipe]["miou"], augmented[recipe]["miou"],
             f"{augmented[recipe]['miou'] - single[recipe]['miou']:+.2f}"] for recipe in single]
    notes = [f"Test-time augmentation: scales {', '.join(f'{s:g}' for s in TTA_SCALES)} of the evaluation size, "
             "each also flipped, class probabilities averaged (segkit.inference.predict_augmented)."]
    if profile == "a100":
        rows += [[f"mmsegmentation DeepLabV3+ R-101, {schedule} (published)", one, many, f"{many - one:+.2f}"]
                 for schedule, (one, many) in MMSEG_PUBLISHED.items()]
    else:
        notes.append("mmsegmentation's published ADE20k numbers (44.60 / 46.06 at 80k iterations, 45.47 / "
                     "46.35 at 160k) compare with the a100 profile's runs on ADE20k, not with this profile's.")
    return Table(["run", "mIoU, one scale", "mIoU, multi-scale + flip", "difference"], rows,
                 caption="Evaluation with test-time augmentation", notes=notes)


def passes_note(runs: Mapping[str, Run]) -> str:
    """Each run's training cost in passes, relative to the baseline's (one line)."""
    baseline = runs.get("baseline")
    if baseline is None:
        return "No baseline run: costs cannot be compared."
    parts = [f"{recipe} {comparison.cost_ratio(baseline, run, 'passes'):.2f}x" for recipe, run in runs.items()]
    return "Training cost in forward-backward passes, relative to the baseline: " + ", ".join(parts) + "."

"""The pictures the notebooks teach with: what each algorithm of a recipe does, computed.

Each picture is a pure function that computes it (numbers a test can check) and a thin function
that draws it (a plotly figure, or HTML pictures from ``segkit.teaching.gallery``). They use segkit's own
code where there is some: MixUp is ``segkit.functional.mix_batch``, the SAM step is
``segkit.functional.SAMOptimizer``, the losses are ``segkit.losses``.

    lr_schedules           cosine against constant learning rate, over each recipe's length
    missing_class_losses   why the Dice term helps small classes (cross-entropy barely notices them)
    ema_trajectory         an exponential moving average of a noisy weight trajectory
    memory_positions       what channels-last changes in memory
    mixup_example          a MixUp blend of two built-in images and their masks
    sam_step, sam_view     SAM's perturbed step on a 2-D loss surface, and the loss it really minimizes
    mixing_histogram       how MixUp's alpha sets the strength of the blends

The figures of what ``segkit.teaching.measurements`` measures on the learner's own runs: the EMA's weights
against the raw ones (``ema_against_raw_figure``), sharpness (``sharpness_figure``), and the
train-validation gap (``fit_gap_figure``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch.nn import functional as F

from segkit import recipes
from segkit.data import open_dataset
from segkit.functional import SAMOptimizer, ema_smoothing, mix_batch
from segkit.losses import cross_entropy, dice_loss
from segkit.metrics import confusion_matrix, mean_iou, pixel_accuracy
from segkit.recipes import Recipe
from segkit.runs import Run
from segkit.teaching import measurements
from segkit.teaching.gallery import blend_masks, colorize, legend, palette, picture_table, to_picture
from segkit.teaching.plots import recipe_color
from segkit.teaching.tables import Table
from segkit.transforms import eval_transform

LAYOUT = {"template": "plotly_white", "margin": {"t": 60, "b": 40, "l": 55, "r": 20}}


# --- learning-rate schedule -------------------------------------------------------------------

def learning_rate(recipe: Recipe, fraction: float) -> float:
    """The learning rate after ``fraction`` (0 to 1) of training: cosine to 0, or constant.

    Example:
        >>> learning_rate(recipes.baseline(), 0.5), learning_rate(recipes.mild(), 0.5)
        (0.04, 0.08)
    """
    if recipe.lr_schedule == "constant":
        return recipe.lr
    return round(recipe.lr * 0.5 * (1 + math.cos(math.pi * fraction)), 12)


def lr_schedule_figure(chosen: Sequence[Recipe] | None = None) -> go.Figure:
    """Learning rate against epochs (reference scale) for each recipe."""
    figure = go.Figure()
    for recipe in chosen or [recipes.get(name) for name in recipes.RECIPES]:
        epochs = np.linspace(0, recipe.epochs, 200)
        figure.add_trace(go.Scatter(x=epochs, y=[learning_rate(recipe, e / recipe.epochs) for e in epochs],
                                    name=f"{recipe.name} ({recipe.lr_schedule}, {recipe.epochs} ep)",
                                    line={"color": recipe_color(recipe.name)}))
    figure.update_layout(title="Learning rate over each recipe's training (reference epochs)", height=320,
                         xaxis_title="epoch", yaxis_title="learning rate", **LAYOUT)
    return figure


# --- cross-entropy and Dice -------------------------------------------------------------------

def missing_class_losses(mask: torch.Tensor, num_classes: int, confidence: float = 8.0,
                         ce_weight: float = 0.375, dice_weight: float = 1.125) -> Table:
    """Losses and metrics of a perfect prediction, and of one that never predicts the smallest class.

    The pixels of the smallest class present are predicted as the most common class instead. The
    loss terms are shown as they enter the training objective, weighted. Cross-entropy is a mean
    over pixels: its rise grows with how confidently the missed pixels are wrong (``confidence``,
    the logit of the predicted class) and shrinks with the class's share of the pixels. Dice, like
    mIoU, is a mean over the classes present: its rise is about one class's share, whatever the
    confidence.

    Args:
        mask: ``(H, W)`` training mask (-1 = ignored).
        num_classes: C.
        confidence: the logit of the predicted class (others 0).
        ce_weight, dice_weight: the loss weights (the reference's 0.375 and 1.125).
    """
    labelled = mask[mask >= 0]
    counts = torch.bincount(labelled, minlength=num_classes)
    present = (counts > 0).nonzero().flatten()
    small, common = int(present[counts[present].argmin()]), int(counts.argmax())
    perfect = mask.clamp_min(0)
    missing = torch.where(mask == small, common, perfect)
    rows = []
    for label, predicted in (("perfect", perfect), ("never predicts the smallest class", missing)):
        logits = confidence * F.one_hot(predicted, num_classes).permute(2, 0, 1)[None].float()  # (1, C, H, W)
        log_probs = F.log_softmax(logits, dim=1)
        confusion = confusion_matrix(predicted[None], mask[None], num_classes)
        rows.append([label, pixel_accuracy(confusion), mean_iou(confusion),
                     ce_weight * float(cross_entropy(log_probs, mask[None])),
                     dice_weight * float(dice_loss(log_probs.exp(), mask[None]))])
    share = 100 * float(counts[small]) / float(counts.sum())
    rise_ce, rise_dice = rows[1][3] - rows[0][3], rows[1][4] - rows[0][4]
    return Table(
        ["prediction", "pixel accuracy", "mIoU", f"{ce_weight:g} × cross-entropy", f"{dice_weight:g} × Dice"],
        rows, caption=f"Missing one small class ({share:.1f}% of the pixels, {len(present)} classes present)",
        notes=[f"Weighted as in the objective, the cross-entropy term rises by {rise_ce:.3f} and the Dice term "
               f"by {rise_dice:.3f}. The cross-entropy rise depends on the assumed confidence (logit "
               f"{confidence:g} here) and on the class's pixel share ({share:.1f}%); the Dice rise is about "
               f"{dice_weight:g} / {len(present)} (one class of {len(present)}) at any confidence."])


def first_mask(root: str | Path, size: int = 64, split: str = "validation") -> tuple[torch.Tensor, int]:
    """The first mask of a dataset at ``size`` pixels, and the number of classes."""
    dataset = open_dataset(root, split, eval_transform(size))
    return dataset[0][1], dataset.num_classes


# --- EMA --------------------------------------------------------------------------------------

def moving_average(values: np.ndarray, half_life: int, update_interval: int = 1) -> np.ndarray:
    """The EMA of a trajectory as Composer keeps it: updated every ``update_interval`` steps, held between.

    Example:
        >>> moving_average(np.array([0.0, 2.0, 2.0, 2.0]), half_life=1).tolist()
        [0.0, 1.0, 1.5, 1.75]
    """
    smoothing = ema_smoothing(half_life, update_interval)
    averaged = np.empty_like(values, dtype=float)
    current = float(values[0])
    for step, value in enumerate(values):
        if step and step % update_interval == 0:
            current = smoothing * current + (1 - smoothing) * float(value)
        averaged[step] = current
    return averaged


def noisy_trajectory(steps: int, seed: int = 0, start: float = 1.0, pull: float = 0.01,
                     noise: float = 0.025) -> np.ndarray:
    """One weight trained by SGD with a constant learning rate: it drifts to the minimum (0) and keeps
    bouncing around it, because every mini-batch gradient is noisy."""
    rng = np.random.default_rng(seed)
    weights = np.empty(steps)
    weight = start
    for step in range(steps):
        weights[step] = weight
        weight += -pull * weight + noise * rng.standard_normal()
    return weights


def ema_figure(epochs: int = recipes.mild().epochs, seed: int = 0) -> go.Figure:
    """A simulated scalar weight and its EMA with mild's (1000ba, every 10ba) and hot's (2000ba, every 1ba)
    settings, over ``epochs`` reference epochs (mild's 25 by default; hot's 240 for notebook 03)."""
    steps = epochs * recipes.REFERENCE_STEPS_PER_EPOCH
    weights = noisy_trajectory(steps, seed)
    shown = slice(None, None, max(4, steps // 2000))  # about 2,000 points are enough to draw
    epoch_axis = (np.arange(steps) / recipes.REFERENCE_STEPS_PER_EPOCH)[shown].round(3)
    figure = go.Figure(go.Scatter(x=epoch_axis, y=weights[shown].round(4), name="a simulated weight trained by SGD",
                                  line={"color": "#bbb", "width": 1}))
    for recipe in (recipes.mild(), recipes.hot()):
        half_life = recipes.to_batches(recipe.ema_half_life, recipes.REFERENCE_STEPS_PER_EPOCH)
        interval = int(recipes.to_batches(recipe.ema_update_interval, recipes.REFERENCE_STEPS_PER_EPOCH))
        label = f"EMA, half-life {recipe.ema_half_life}, every {recipe.ema_update_interval} ({recipe.name})"
        averaged = moving_average(weights, half_life, interval)[shown].round(4)
        figure.add_trace(go.Scatter(x=epoch_axis, y=averaged, name=label,
                                    line={"color": recipe_color(recipe.name), "width": 2}))
    figure.add_hline(y=0, line={"dash": "dot", "color": "#555"}, annotation_text="minimum")
    figure.update_layout(title=f"A simulated weight and its EMA over {epochs} reference epochs",
                         height=340, xaxis_title="epoch (157 steps each, as the reference)",
                         yaxis_title="weight", **LAYOUT)
    return figure


# --- channels-last ----------------------------------------------------------------------------

def memory_positions(shape: tuple[int, int, int, int],
                     channels_last: bool) -> tuple[np.ndarray, tuple[int, ...]]:
    """Where each element ``(n, c, h, w)`` of a tensor sits in memory, and the tensor's strides.

    Example:
        >>> positions, strides = memory_positions((1, 2, 1, 2), channels_last=True)
        >>> strides, positions[0, :, 0, :].tolist()
        ((4, 1, 4, 2), [[0, 2], [1, 3]])
    """
    tensor = torch.empty(shape)
    if channels_last:
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    strides = tensor.stride()
    index = np.indices(shape)
    return sum(index[d] * strides[d] for d in range(4)), tuple(strides)


def channels_last_figure(shape: tuple[int, int, int, int] = (1, 3, 2, 3)) -> go.Figure:
    """The memory of a small image tensor, element by element, in NCHW and in channels-last order."""
    names = ["R", "G", "B"] + [f"c{c}" for c in range(3, shape[1])]
    rows, labels, texts = [], [], []
    for channels_last in (False, True):
        positions, strides = memory_positions(shape, channels_last)
        order = np.argsort(positions.ravel())
        c, h, w = (np.indices(shape)[d].ravel()[order] for d in (1, 2, 3))
        rows.append(c)
        texts.append([f"{names[ci]}<br>({hi},{wi})" for ci, hi, wi in zip(c, h, w, strict=True)])
        labels.append(f"{'channels-last' if channels_last else 'NCHW (default)'}<br>strides {strides}")
    figure = go.Figure(go.Heatmap(
        z=rows, text=texts, texttemplate="%{text}", y=labels, showscale=False, xgap=2, ygap=6,
        colorscale=[[0, "#f4a6a6"], [0.5, "#a6e3a6"], [1, "#a6c8f4"]], hoverinfo="skip"))
    figure.update_layout(title=f"A {shape[1]}-channel {shape[2]}x{shape[3]} image in memory, first byte left",
                         height=260, xaxis={"title": "position in memory", "dtick": 1}, **LAYOUT)
    figure.update_yaxes(autorange="reversed")
    return figure


# --- MixUp ------------------------------------------------------------------------------------

def mixup_example(root: str | Path, first: int = 0, second: int = 1, mixing: float = 0.3,
                  size: int = 96) -> dict[str, Any]:
    """Two validation images and masks, mixed by ``segkit.algorithms.mix_batch``.

    Returns:
        ``image_a``, ``image_b``, ``mixed`` (``(H, W, 3)`` uint8), ``mask_a``, ``mask_b``
        (``(H, W)``), ``weight_a`` (the share of the first image, ``1 - mixing``).
    """
    dataset = open_dataset(root, "validation", eval_transform(size))
    (image_a, mask_a), (image_b, mask_b) = dataset[first], dataset[second]
    images, masks = torch.stack([image_a, image_b]), torch.stack([mask_a, mask_b])
    mixed, target = mix_batch(images, masks, mixing, permutation=torch.tensor([1, 0]))
    return {"image_a": to_picture(image_a), "image_b": to_picture(image_b), "mixed": to_picture(mixed[0]),
            "mask_a": target.first[0].numpy(), "mask_b": target.second[0].numpy(), "weight_a": float(target.lam),
            "class_names": dataset.class_names}


def mixup_html(example: dict) -> str:
    """The MixUp example as pictures: the two inputs and the blend, with their masks."""
    colors = palette(example["class_names"])
    weight = example["weight_a"]
    table = picture_table(
        [(example["image_a"], example["image_b"], example["mixed"]),
         (colorize(example["mask_a"], colors), colorize(example["mask_b"], colors),
          blend_masks(example["mask_a"], example["mask_b"], weight, colors))],
        ["image A", "image B", f"training input: {weight:.1f} A + {1 - weight:.1f} B"], width=160,
        row_labels=["image", "target"])
    return table + legend(example["class_names"], colors)


def mixing_weights(alpha: float, count: int = 20000, seed: int = 0) -> np.ndarray:
    """MixUp's mixing weights ``min(z, 1 - z)``, ``z ~ Beta(alpha, alpha)``, as segkit draws them."""
    draws = np.random.default_rng(seed).beta(alpha, alpha, count)
    return np.minimum(draws, 1 - draws)


def mixing_histogram(alpha: float, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Share of batches per mixing-weight bin over [0, 0.5]: ``(bin centres, shares)``."""
    shares, edges = np.histogram(mixing_weights(alpha), bins=bins, range=(0.0, 0.5))
    return (edges[:-1] + edges[1:]) / 2, shares / shares.sum()


def mixing_figure(chosen: Sequence[Recipe] | None = None) -> go.Figure:
    """Histograms of MixUp's mixing weight for each recipe with MixUp (medium's alpha 0.2, hot's 0.5)."""
    chosen = chosen or [recipes.get(name) for name in recipes.RECIPES]
    figure = go.Figure()
    for alpha, name in ((r.mixup_alpha, r.name) for r in chosen if r.mixup_alpha is not None):
        centres, shares = mixing_histogram(alpha)
        figure.add_trace(go.Bar(x=centres, y=shares.round(4), width=0.025, opacity=0.6,
                                name=f"alpha {alpha} ({name}): mean {mixing_weights(alpha).mean():.2f}",
                                marker={"color": recipe_color(name)}))
    figure.update_layout(barmode="overlay", title="How much of the other image MixUp blends in",
                         height=320, xaxis_title="mixing weight (0 = no blend, 0.5 = half and half)",
                         yaxis_title="share of batches", **LAYOUT)
    return figure


# --- SAM --------------------------------------------------------------------------------------

def toy_loss(w: torch.Tensor) -> torch.Tensor:
    """A 2-D loss with a deep, narrow minimum at (0.8, 0.5) and a wide one at (-0.8, -0.5).

    Works on ``(..., 2)`` tensors (a grid or one point).
    """
    x, y = w[..., 0], w[..., 1]
    sharp = torch.exp(-((x - 0.8) ** 2 + (y - 0.5) ** 2) / (2 * 0.15 ** 2))
    wide = 0.8 * torch.exp(-((x + 0.8) ** 2 + (y + 0.5) ** 2) / (2 * 0.6 ** 2))
    return 0.02 * (x ** 2 + y ** 2) - sharp - wide


def sam_step(start: Sequence[float], lr: float = 0.1, rho: float = 0.3,
             loss: Callable[[torch.Tensor], torch.Tensor] = toy_loss) -> dict[str, np.ndarray]:
    """One step of plain SGD and one of ``SAMOptimizer`` from the same point.

    Returns:
        ``start``, ``perturbed`` (``w + e(w)``, where SAM takes its gradient), ``sgd`` and ``sam``
        (the points after each step), as ``(2,)`` arrays.
    """
    def step(rho_: float | None) -> tuple[np.ndarray, np.ndarray]:
        weight = torch.tensor(start, dtype=torch.float64, requires_grad=True)
        base = torch.optim.SGD([weight], lr=lr)
        optimizer = SAMOptimizer(base, rho=rho_) if rho_ else base
        seen = []

        def closure(**_: object) -> torch.Tensor:  # SAMOptimizer passes Composer's closure arguments
            optimizer.zero_grad()
            seen.append(weight.detach().clone().numpy())
            value = loss(weight)
            value.backward()
            return value

        if rho_:
            optimizer.step(closure)
        else:
            closure()
            optimizer.step()
        return weight.detach().numpy(), seen[-1]

    sgd, _ = step(None)
    sam, perturbed = step(rho)
    return {"start": np.array(start, dtype=float), "perturbed": perturbed, "sgd": sgd, "sam": sam}


def sam_view(loss_1d: Callable[[np.ndarray], np.ndarray], points: np.ndarray, rho: float) -> np.ndarray:
    """The loss SAM minimizes, in 1-D: the worst loss within ``rho`` of each point.

    Example:
        >>> sam_view(lambda x: x ** 2, np.array([0.0, 1.0]), rho=0.5).round(3).tolist()
        [0.25, 2.25]
    """
    offsets = np.linspace(-rho, rho, 61)
    return loss_1d(points[:, None] + offsets[None, :]).max(axis=1)


def sam_figure(start: Sequence[float] = (0.55, 0.35), lr: float = 0.2, rho: float = 0.3) -> go.Figure:
    """Left: one SAM step on the 2-D toy loss. Right: the loss along its diagonal, and SAM's view of it."""
    figure = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
        "one step from w", f"along the line through both minima (rho = {rho})"))
    axis = np.linspace(-2, 2, 61)
    grid = torch.tensor(np.stack(np.meshgrid(axis, axis), axis=-1))  # (Y, X, 2)
    figure.add_trace(go.Contour(x=axis, y=axis, z=toy_loss(grid).numpy().round(3), colorscale="Viridis",
                                ncontours=25, showscale=False, hoverinfo="skip"), row=1, col=1)
    step = sam_step(start, lr, rho)
    for key, label, color in (("perturbed", "w + e(w): SAM's look uphill", "#ffffff"),
                              ("sgd", "after an SGD step", "#f4a261"),
                              ("sam", "after a SAM step", "#e63946")):
        figure.add_trace(go.Scatter(x=[step["start"][0], step[key][0]], y=[step["start"][1], step[key][1]],
                                    mode="lines+markers", name=label, line={"color": color, "width": 3},
                                    marker={"size": [9, 9], "symbol": ["circle", "arrow"],
                                            "angleref": "previous"}),
                         row=1, col=1)
    figure.add_trace(go.Scatter(x=[step["start"][0]], y=[step["start"][1]], mode="markers+text", text=["w"],
                                textposition="top left", textfont={"color": "white"}, showlegend=False,
                                marker={"color": "white", "size": 10}), row=1, col=1)
    # The diagonal through both minima, as a 1-D loss of the position t along it.
    direction = np.array([1.6, 1.0]) / np.linalg.norm([1.6, 1.0])

    def along(t: np.ndarray) -> np.ndarray:
        return toy_loss(torch.tensor(t[..., None] * direction)).numpy()

    t = np.linspace(-2.2, 2.2, 221)
    figure.add_trace(go.Scatter(x=t.round(3), y=along(t).round(4), name="loss", line={"color": "#333"}),
                     row=1, col=2)
    figure.add_trace(go.Scatter(x=t.round(3), y=sam_view(along, t, rho).round(4),
                                name="worst loss within rho (what SAM minimizes)",
                                line={"color": "#e63946", "dash": "dash"}), row=1, col=2)
    figure.update_xaxes(title_text="w1", range=[-2, 2], row=1, col=1)
    figure.update_yaxes(title_text="w2", range=[-2, 2], row=1, col=1)
    figure.update_xaxes(title_text="position along the line (wide minimum left, narrow right)", row=1, col=2)
    figure.update_yaxes(title_text="loss", row=1, col=2)
    figure.update_layout(height=420, title="Sharpness-aware minimization",
                         legend={"orientation": "h", "y": -0.2}, **LAYOUT)
    return figure


# --- measured on real runs (segkit.teaching.measurements): their figures ----------------------------------

def ema_against_raw_figure(run: Run) -> go.Figure:
    """Both mIoU curves of one run: what averaging the weights adds at each evaluation."""
    curves = measurements.ema_against_raw(run)
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=curves["epoch"], y=curves["raw"], mode="lines+markers",
                                name="raw weights (what SGD trains)", line={"color": "#999999"}))
    figure.add_trace(go.Scatter(x=curves["epoch"], y=curves["ema"], mode="lines+markers",
                                name="EMA weights (what is evaluated and saved)",
                                line={"color": recipe_color(run.recipe), "width": 3}))
    figure.update_layout(title=f"{run.name}: the EMA's weights against the raw weights, both evaluated",
                         xaxis_title="epoch", yaxis_title="validation mIoU", height=340, **LAYOUT)
    return figure


def budget_curve_figure(final_miou: dict[float, float], mild: tuple[float, float] | None = None) -> go.Figure:
    """Final mIoU against training budget (a share of the baseline's steps), one point per run, each run with
    its schedule compressed into its budget; ``mild``: (its passes as a share of the baseline's, its mIoU)."""
    shares = sorted(final_miou)
    figure = go.Figure(go.Scatter(
        x=shares, y=[final_miou[share] for share in shares], mode="lines+markers+text", name="baseline, compressed",
        text=[f"{final_miou[share] / final_miou[1.0]:.3f} of full" if 1.0 in final_miou and share < 1 else ""
              for share in shares], textposition="bottom right", line={"color": recipe_color("baseline")}))
    if mild is not None:
        figure.add_trace(go.Scatter(x=[mild[0]], y=[mild[1]], mode="markers", name="mild (its passes)",
                                    marker={"color": recipe_color("mild"), "size": 12, "symbol": "diamond"}))
    figure.update_layout(title="The budget curve: each point a whole run, its cosine schedule compressed into "
                               "its budget", xaxis_title="training budget (share of the baseline's steps)",
                         yaxis_title="final validation mIoU", xaxis={"range": [0, 1.05]}, height=360, **LAYOUT)
    return figure


def sharpness_figure(results: dict[str, dict[str, Any]], rho: float) -> go.Figure:
    """Loss increase at radius rho per run: random directions (mean) and SAM's ascent direction."""
    names = list(results)
    figure = go.Figure()
    figure.add_trace(go.Bar(x=names, y=[float(np.mean(results[n]["random"])) for n in names],
                            name="random directions (mean)", marker={"color": "#999999"}))
    figure.add_trace(go.Bar(x=names, y=[results[n]["ascent"] for n in names],
                            name="the steepest direction (SAM's)", marker={"color": "#e63946"}))
    figure.update_layout(barmode="group", height=340, yaxis_title="training loss increase",
                         title=f"Sharpness: how much the loss rises at distance rho = {rho:g} from the weights",
                         **LAYOUT)
    return figure


def fit_gap_figure(gaps: dict[str, dict[str, float]]) -> go.Figure:
    """Training against validation mIoU per run: the overfitting that MixUp and SAM are meant to curb."""
    names = list(gaps)
    figure = go.Figure()
    figure.add_trace(go.Bar(x=names, y=[gaps[n]["train"] for n in names], name="training images",
                            marker={"color": "#636efa"}))
    figure.add_trace(go.Bar(x=names, y=[gaps[n]["validation"] for n in names], name="validation images",
                            marker={"color": "#ff9f1c"}))
    figure.update_layout(barmode="group", height=340, yaxis_title="mIoU",
                         title="The train-validation gap of each run", **LAYOUT)
    return figure


# --- DeepLabV3+: what each ASPP branch sees ---------------------------------------------------

def aspp_taps(image_size: int, output_stride: int, cell: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Where the 3x3 taps of each dilated ASPP branch fall, for one cell of the feature map.

    The backbone turns a ``image_size`` square into ``image_size / output_stride`` feature cells a
    side; an ASPP branch with rate r reads the cell and its neighbours r cells away. Taps beyond the
    feature map read zero padding.

    Returns:
        ``{"rate 6": array (9, 3), ...}``: rows ``(y, x, inside)`` in image pixels (cell centres).

    Example:
        >>> taps = aspp_taps(64, 16)  # 4x4 features: rate 6 reaches past the map from any cell
        >>> int(taps["rate 6"][:, 2].sum())
        1
        >>> int(aspp_taps(512, 8)["rate 12"][:, 2].sum())
        9
    """
    from segkit.model import ASPP_RATES

    side = max(1, image_size // output_stride)
    cy, cx = cell if cell is not None else (side // 2, side // 2)
    taps = {}
    for rate in ASPP_RATES[output_stride]:
        rows = []
        for dy in (-rate, 0, rate):
            for dx in (-rate, 0, rate):
                y, x = cy + dy, cx + dx
                inside = 0 <= y < side and 0 <= x < side
                rows.append(((y + 0.5) * output_stride, (x + 0.5) * output_stride, float(inside)))
        taps[f"rate {rate}"] = np.array(rows)
    return taps


def aspp_table(profiles: Sequence[tuple[str, int, int]]) -> Table:
    """For each ``(name, image_size, output_stride)``: the feature map, and the share of each dilated
    branch's taps that land on the image (the rest read padding), from the centre cell."""
    from segkit.model import ASPP_RATES

    rows = []
    for name, size, stride in profiles:
        taps = aspp_taps(size, stride)
        side = max(1, size // stride)
        rows.append([name, f"{size} px", stride, f"{side} x {side}",
                     ", ".join(f"{label}: {int(t[:, 2].sum())}/9" for label, t in taps.items()),
                     ", ".join(str(r * stride) for r in ASPP_RATES[stride])])
    return Table(["profile", "image", "output stride", "feature map", "taps on the image (centre cell)",
                  "tap spacing in pixels"], rows,
                 caption="What the dilated ASPP branches read at each profile's size")


def aspp_figure(root: str | Path, image_size: int, output_stride: int, index: int = 0) -> go.Figure:
    """A validation image at the profile's size with the taps of each ASPP branch from the centre cell.

    Filled markers read the image; open markers fall beyond it and read zero padding.
    """
    dataset = open_dataset(root, "validation", eval_transform(image_size))
    image = to_picture(dataset[index][0])
    figure = go.Figure(go.Image(z=image))
    symbols = ["circle", "square", "diamond"]
    for (label, taps), symbol in zip(aspp_taps(image_size, output_stride).items(), symbols, strict=False):
        inside = taps[:, 2] > 0
        figure.add_trace(go.Scatter(x=taps[inside, 1], y=taps[inside, 0], mode="markers", name=f"{label}: on the image",
                                    marker={"symbol": symbol, "size": 11, "color": "#e63946"}))
        figure.add_trace(go.Scatter(x=taps[~inside, 1], y=taps[~inside, 0], mode="markers",
                                    name=f"{label}: padding", marker={"symbol": f"{symbol}-open", "size": 11,
                                                                       "color": "#636efa"}))
    reach = max(abs(t[:, :2] - image_size / 2).max() for t in aspp_taps(image_size, output_stride).values())
    bound = max(image_size / 2, reach + output_stride)
    figure.update_xaxes(range=[image_size / 2 - bound, image_size / 2 + bound])
    figure.update_yaxes(range=[image_size / 2 + bound, image_size / 2 - bound])
    figure.update_layout(title=f"ASPP taps from the centre cell: {image_size} px at output stride {output_stride}",
                         height=420, **LAYOUT)
    return figure


def feature_map_side(backbone: str, output_stride: int, image_size: int) -> int:
    """The side of the backbone's last feature map for a square image, measured by running it.

    Example:
        >>> feature_map_side("resnet10", 16, 64), feature_map_side("resnet10", 8, 64)
        (4, 8)
    """
    from segkit.model import deeplabv3plus

    model = deeplabv3plus(backbone, 2, output_stride, head_channels=8).eval()
    with torch.no_grad():
        _, deep = model.features(torch.zeros(1, 3, image_size, image_size))
    return int(deep.shape[-1])

"""The figure of docs/laptop-regime.md: every candidate baseline's validation mIoU against its training steps.

    .venv/bin/python bench/regime_figure.py   # reads runs/regime, writes docs/laptop-regime.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from segkit.runs import Run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/regime")
    parser.add_argument("--out", default=str(REPO / "docs" / "laptop-regime.png"))
    args = parser.parse_args()
    runs = Path(args.runs)
    names = sorted({p.name.rsplit("-", 1)[0] for p in runs.glob("*-full")},
                   key=lambda n: (n[0] != "C", n[0] != "S", n[0] != "T", len(n), n))
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.8), sharey=True)
    groups = {"C": "round 1: classification pretext", "S": "round 2: segmentation pretext",
              "T": "round 3 and the shipped cpu profile"}
    for axis, (prefix, title) in zip(axes, groups.items(), strict=True):
        for name in names:
            if not (name.startswith(prefix) or (prefix == "T" and name == "cpu")):
                continue
            full, short = Run.load(runs / f"{name}-full"), Run.load(runs / f"{name}-short")
            line, = axis.plot([row["step"] for row in full.history], [row["miou"] for row in full.history],
                              label=name, linewidth=2.5 if name == "cpu" else 1.5)
            axis.plot([row["step"] for row in short.history], [row["miou"] for row in short.history],
                      linestyle="--", color=line.get_color(), linewidth=1)
        axis.set_title(title)
        axis.set_xlabel("optimizer steps")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, ncol=2)
    axes[0].set_ylabel("validation mIoU")
    figure.suptitle("Candidate baselines, seed 17 (dashed: the same baseline compressed to 20% of its epochs)")
    figure.tight_layout()
    figure.savefig(args.out, dpi=90)
    print(args.out)


if __name__ == "__main__":
    main()

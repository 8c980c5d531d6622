"""Controls the recipe study lacked, trained on held-out seeds beside the runs they control.

    baseline                      CE + Dice (0.375 CE + 1.125 Dice), 128 reference epochs: the kit's baseline
    baseline, Dice off            CE at the baseline's weight 0.375, no Dice: Dice's own share
    baseline without Dice         CE alone at weight 1 (the lab's Dice switch): the article's baseline, apparently
    baseline at hot's length      the baseline trained 240 reference epochs: what hot's length alone gives
    hot                           the recipe whose gain the last control splits

The two Dice controls separate what the loss term does from the CE weight that the lab's switch also
changes (0.375 -> 1). The length control splits hot's gain into what 240 epochs give any recipe and what
hot's algorithms add. Each pair is compared per seed (``segkit.teaching.verdicts``). Run folders are kept, so a
second call only reports:

    .venv/bin/python bench/controls.py --seeds 101 102 --runs /tmp/controls
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
from pathlib import Path

from segkit import recipes
from segkit.engine import train
from segkit.runs import Run
from segkit.spec import run_spec
from segkit.teaching.verdicts import verdict

CONTROLS = {
    "baseline": recipes.baseline(),
    "baseline, Dice off": dataclasses.replace(recipes.baseline(), name="baseline-dice-off", dice_weight=0.0),
    "baseline without Dice": dataclasses.replace(recipes.baseline(), name="baseline-without-dice", dice_weight=0.0,
                                                 ce_weight=1.0),
    "baseline at hot's length": dataclasses.replace(recipes.baseline(), name="baseline-hot-length",
                                                    epochs=recipes.hot().epochs),
    "hot": recipes.hot(),
}
#: (what is measured, the run, the run it is measured against): each a final-mIoU difference per seed.
COMPARISONS = [
    ("Dice's share at the baseline's CE weight", "baseline", "baseline, Dice off"),
    ("raising CE's weight 0.375 -> 1 without Dice", "baseline without Dice", "baseline, Dice off"),
    ("the lab's Dice switch (both changes)", "baseline", "baseline without Dice"),
    ("hot against the baseline", "hot", "baseline"),
    ("hot's length alone", "baseline at hot's length", "baseline"),
    ("hot against the baseline at hot's length", "hot", "baseline at hot's length"),
    ("hot against the baseline without Dice", "hot", "baseline without Dice"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102])
    parser.add_argument("--runs", type=Path, default=Path("/tmp/controls"))
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--report-only", action="store_true", help="train nothing: report the finished runs")
    args = parser.parse_args()
    print(f"controls on {args.profile}, seeds {args.seeds}: {platform.machine()}, python {platform.python_version()}",
          flush=True)
    final: dict[str, dict[int, float]] = {}
    for seed in args.seeds:
        for label, recipe in CONTROLS.items():
            folder = args.runs / f"{recipe.name}-seed{seed}"
            if args.report_only:
                if not (folder / "model.pt").is_file():
                    continue
                run = Run.load(folder)
                miou, seconds = run.final["miou"], run.final["wall_time"]
            else:
                result = train(run_spec(recipe, args.profile, "scenes", seed=seed), save_folder=args.runs,
                               run_name=folder.name, print_progress=False)
                run, miou, seconds = result.run, result.miou, result.wall_time
            final.setdefault(label, {})[seed] = miou
            print(f"seed {seed} {label:26s} mIoU {miou:6.2f}  {seconds:6.0f} s ({run.info['plan']['epochs']} epochs)",
                  flush=True)
    seeds = [seed for seed in args.seeds if all(seed in by_seed for by_seed in final.values())
             and len(final) == len(CONTROLS)]
    if seeds != args.seeds:
        print(f"seeds with every control finished: {seeds}", flush=True)
    args.seeds = seeds
    print("\n| run | " + " | ".join(f"seed {seed}" for seed in args.seeds) + " |")
    print("|---|" + "---|" * len(args.seeds))
    for label, by_seed in final.items():
        print(f"| {label} | " + " | ".join(f"{by_seed[seed]:.2f}" for seed in args.seeds) + " |")
    print("\n| difference | per seed | verdict |")
    print("|---|---|---|")
    for what, run, against in COMPARISONS:
        # as printed, so that the verdict can be computed again from the table
        differences = [round(final[run][seed] - final[against][seed], 2) for seed in args.seeds]
        print(f"| {what} ({run} - {against}) | {', '.join(f'{d:+.2f}' for d in differences)} | "
              f"{verdict(differences).text()} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

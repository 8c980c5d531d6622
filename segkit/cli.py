"""The ``segkit`` command: data, train, pretrain, evaluate, recipes, notebooks, and the class table.

Every user error prints one line, ``segkit: error: ...``, and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segkit.errors import ConfigError, SegkitError, one_line
from segkit.recipes import RECIPES
from segkit.scenes import DEFAULT_TRAIN_IMAGES, DEFAULT_VAL_IMAGES
from segkit.spec import DEFAULT_PROFILE, DEFAULT_RECIPE, DEFAULT_SAVE_FOLDER, DEFAULT_SEED, plan_launch

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points at ``--help``."""

    def error(self, message: str) -> None:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_data_command(commands) -> None:
    parser = commands.add_parser("data", help="generate the built-in dataset")
    kinds = parser.add_subparsers(dest="kind", required=True, parser_class=OneLineParser)
    scenes = kinds.add_parser("scenes", help="procedural scenes in the ADEChallengeData2016 layout")
    scenes.add_argument("--out", required=True, help="folder to write (images/, annotations/, ...)")
    scenes.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    scenes.add_argument("--train-images", type=int, default=DEFAULT_TRAIN_IMAGES,
                        help=f"training images (default {DEFAULT_TRAIN_IMAGES})")
    scenes.add_argument("--val-images", type=int, default=DEFAULT_VAL_IMAGES,
                        help=f"validation images (default {DEFAULT_VAL_IMAGES})")
    prefill = kinds.add_parser("prefill", help="fill the cache ($SEGKIT_DATA) with what the profiles' runs read, "
                                               "and record its hashes (an instructor, the day before)")
    prefill.add_argument("--profile", action="append", default=None,
                         help="a profile to fill for (repeat it; default: every profile on the built-in scenes)")
    prefill.add_argument("--shared", action="store_true",
                         help="make the cache read-only to every other account: folders 0755, files 0444")


def add_train_command(commands) -> None:
    parser = commands.add_parser("train", help="train a recipe; re-running a run name resumes it")
    parser.add_argument("--recipe", default=DEFAULT_RECIPE,
                        help=f"{', '.join(RECIPES)}, or a .yaml file (default {DEFAULT_RECIPE})")
    parser.add_argument("--data", default=None,
                        help="'scenes' (built-in, the cpu default) or a folder with images/ and annotations/")
    parser.add_argument("--profile", default=DEFAULT_PROFILE,
                        help=f"cpu, scratch, gpu (one GPU, ADE20k), a100 (the reference job) or tiny "
                             f"(default {DEFAULT_PROFILE})")
    parser.add_argument("--run-name", default=None, help="run folder name (default RECIPE-PROFILE-seedSEED)")
    parser.add_argument("--save-folder", default=DEFAULT_SAVE_FOLDER,
                        help=f"where run folders go (default {DEFAULT_SAVE_FOLDER})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"seed (default {DEFAULT_SEED}, as the reference)")
    parser.add_argument("--duration", default=None, help="override the length: e.g. 2ba or 10ep")
    parser.add_argument("--weights", default=None,
                        help="backbone init: imagenet, a local torchvision .pth file, or none")
    parser.add_argument("--check-data", action=argparse.BooleanOptionalAction, default=None,
                        help="read every validation file before training, so a bad one fails at the start "
                             "(default: on for the gpu and a100 profiles)")
    parser.add_argument("--gpus", type=int, default=None,
                        help="processes on this machine, one per GPU (default: every visible GPU on a GPU profile, "
                             "1 on the CPU); more than 1 in all trains through Composer's launcher (DDP)")
    multinode = parser.add_argument_group("several machines (docs/distributed.md)")
    multinode.add_argument("--nodes", type=int, default=1, help="machines training together (default 1)")
    multinode.add_argument("--node-rank", type=int, default=0, help="this machine's index (Slurm: $SLURM_NODEID)")
    multinode.add_argument("--master-addr", default="127.0.0.1", help="node 0's address, the same on every node")
    multinode.add_argument("--master-port", type=int, default=0, help="a free port on node 0, the same on every node")


def add_pretrain_command(commands) -> None:
    parser = commands.add_parser("pretrain", help="pretrain the laptop backbone on built-in scenes (cached)")
    parser.add_argument("--backbone", default="resnet10", help="backbone to pretrain (default resnet10)")
    parser.add_argument("--task", default="segmentation", help="pretext task: segmentation or classification")
    parser.add_argument("--out", default=None,
                        help="write the weights to this .pth (and its provenance .json) instead of the cache")
    parser.add_argument("--images", type=int, default=None, help="scenes to pretrain on (default: the cached file's)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the cached file's)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="segkit", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_data_command(commands)
    add_train_command(commands)
    add_pretrain_command(commands)
    evaluate = commands.add_parser("evaluate", help="evaluate a run's weights")
    evaluate.add_argument("run_folder", help="a run folder (runs/NAME)")
    evaluate.add_argument("--data", default=None, help="data root (default: the run's own)")
    evaluate.add_argument("--augmented", action="store_true",
                          help="test-time augmentation: 6 scales (0.5-1.75) and a flip, probabilities averaged")
    page = commands.add_parser("page", help="an executed notebook as an offline HTML page, pictures added")
    page.add_argument("notebook", nargs="+", help="executed notebooks (e.g. papermill's output)")
    recipes = commands.add_parser("recipes", help="list the recipes, or show one")
    recipes.add_argument("name", nargs="?", help="a recipe name or .yaml file")
    recipes.add_argument("--yaml", action="store_true", help="print the recipe as YAML (for --recipe FILE)")
    recipes.add_argument("--profile", default=None, help="show the recipe scaled to this profile")
    share = commands.add_parser("share", help="publish a finished run to the class table ($SEGKIT_CLASS)")
    share.add_argument("run_folder", help="a finished run folder (runs/NAME)")
    share.add_argument("--class-folder", default=None, help="the class folder (default $SEGKIT_CLASS)")
    room = commands.add_parser("class", help="show the class table: every learner's shared runs, grouped")
    room.add_argument("--class-folder", default=None, help="the class folder (default $SEGKIT_CLASS)")
    notebooks = commands.add_parser("notebooks", help="run the five notebooks headless and write a summary page")
    notebooks.add_argument("--out", default="runs/notebooks", help="output folder (default runs/notebooks)")
    notebooks.add_argument("--only", nargs="*", default=None, help="notebook names to run (default all)")
    notebooks.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                           help="a notebook parameter, as papermill's -p")
    return parser


def run_data(args: argparse.Namespace) -> None:
    from segkit.scenes import write_scenes

    if args.kind == "prefill":
        run_prefill(args)
        return
    for name in ("train_images", "val_images"):
        if getattr(args, name) < 1:
            raise SegkitError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    root = write_scenes(args.out, seed=args.seed, train_images=args.train_images, val_images=args.val_images)
    print(f"wrote {args.train_images} training and {args.val_images} validation scenes to {root}")


def run_prefill(args: argparse.Namespace) -> None:
    """Make every cache entry the profiles' runs read, then record them (``segkit.cache.prefill``)."""
    from segkit import cache, pretraining, scenes
    from segkit.profiles import PROFILES, get_profile

    names: list[str] = []
    for profile in map(get_profile, args.profile or [p.name for p in PROFILES.values() if p.default_data == "scenes"]):
        if profile.default_data == "scenes":
            scenes.builtin_scenes(profile.scenes_train_images, profile.scenes_val_images)
            names.append(scenes.entry_name(profile.scenes_train_images, profile.scenes_val_images))
        if profile.weights == "scenes":
            settings = pretraining.PretrainingSettings(backbone=profile.backbone)
            pretraining.pretrained_backbone(profile.backbone)
            weights = pretraining.entry_name(settings)
            names += [scenes.entry_name(settings.images, 1, settings.data_seed), weights,
                      str(Path(weights).with_suffix(".json"))]
    cache.prefill(list(dict.fromkeys(names)), shared=args.shared)


def run_train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from segkit.spec import launched, run_spec

    spec = run_spec(args.recipe, args.profile, args.data, args.seed, args.duration, args.weights)
    if not launched():  # a process that Composer's launcher started trains; any other decides whether to launch
        launch = plan_launch(spec.profile, args.gpus, args.nodes, args.node_rank, args.master_addr, args.master_port)
        if launch.world_size > 1:
            command = launch.command(argv)
            print("launching:", " ".join(command), flush=True)
            return launch.run(argv)
    from segkit.engine import train

    result = train(spec, run_name=args.run_name, save_folder=args.save_folder, check_data=args.check_data)
    print(f"{result.run.recipe} on {spec.profile.name}: mIoU {result.miou:.2f}, pixel accuracy "
          f"{result.pixel_accuracy:.2f}, {result.wall_time:.0f} s; run folder {result.folder}")
    return 0


def run_pretrain(args: argparse.Namespace) -> None:
    import dataclasses
    import json

    from segkit import pretraining

    settings = pretraining.PretrainingSettings(backbone=args.backbone, task=args.task)
    overrides = {name: getattr(args, name) for name in ("images", "epochs") if getattr(args, name) is not None}
    if args.out is None and overrides:
        raise SegkitError("--images and --epochs change the weights: give --out too (the cache holds the defaults)")
    settings = dataclasses.replace(settings, **overrides)
    path = (pretraining.pretrain(settings, args.out) if args.out is not None
            else pretraining.pretrained_backbone(args.backbone, args.task))
    provenance = pretraining.read_provenance(path)
    print(f"{path}\n{json.dumps({k: provenance[k] for k in ('fingerprint', 'sha256', 'seconds')})}")


def run_recipes(args: argparse.Namespace) -> None:
    from segkit import recipes
    from segkit.profiles import get_profile
    from segkit.spec import RunSpec

    if args.name is None:
        for name in recipes.RECIPES:
            recipe = recipes.get(name)
            changed = recipe.changes()
            changed.pop("name", None)
            summary = ", ".join(f"{key}={ours}" for key, (_, ours) in changed.items()) or "the reference baseline"
            print(f"{name:9s} {recipe.epochs:4d} ep  {summary}")
        return
    recipe, baseline = recipes.load(args.name), recipes.baseline()
    if args.profile:
        profile = get_profile(args.profile)
        # on the built-in scenes the steps per epoch are known; on ADE20k they are the reference's
        steps = (RunSpec(recipe, profile).steps_per_epoch() if profile.default_data == "scenes"
                 else recipes.REFERENCE_STEPS_PER_EPOCH)
        recipe, baseline = (recipes.scale(r, profile, steps_per_epoch=steps) for r in (recipe, baseline))
    if args.yaml:
        print(recipe.to_yaml(), end="")
        return
    for key, value in vars(recipe).items():
        mark = "" if getattr(baseline, key) == value else f"   (baseline: {getattr(baseline, key)})"
        print(f"{key:20s} {value}{mark}")


def teaching(module: str, command: str) -> Any:
    """``segkit.teaching.MODULE``, for a command of the teaching layer; without its extra installed, a
    one-line error saying how to install it (the library's commands never need it)."""
    try:
        return importlib.import_module(f"segkit.teaching.{module}")
    except ModuleNotFoundError as error:
        if error.name is None or error.name.split(".")[0] == "segkit":
            raise
        raise ConfigError(f"segkit {command} needs the teaching layer, and {error.name!r} is not installed; "
                          f"install it with: pip install 'segkit[teaching]' (in a clone: pip install -e "
                          f"'.[teaching]')") from None


def run_notebooks(args: argparse.Namespace) -> None:
    teaching("headless", "notebooks").run_all(args.out, only=args.only, parameters=dict(args.parameter))


def run_page(args: argparse.Namespace) -> None:
    pages = teaching("pages", "page")
    for notebook in map(Path, args.notebook):
        if not notebook.is_file() or notebook.suffix != ".ipynb":
            raise ConfigError(f"{notebook} is not a notebook file (.ipynb); give an executed notebook, "
                              f"e.g. papermill's output")
        pictures = pages.add_pictures(notebook)
        print(f"{pages.write_page(notebook)}: the page of {notebook} ({pictures} picture(s) added to it)")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "data":
            run_data(args)
        elif args.command == "train":
            return run_train(args, argv)
        elif args.command == "evaluate":
            from segkit.inference import evaluate

            scores = evaluate(args.run_folder, args.data, augmented=args.augmented)
            print(f"mIoU {scores['miou']:.2f}  pixel accuracy {scores['pixel_accuracy']:.2f}"
                  + ("  (multi-scale + flip)" if args.augmented else ""))
        elif args.command == "page":
            run_page(args)
        elif args.command == "pretrain":
            run_pretrain(args)
        elif args.command == "recipes":
            run_recipes(args)
        elif args.command == "notebooks":
            run_notebooks(args)
        elif args.command == "share":
            shared = teaching("classroom", "share").share(args.run_folder, args.class_folder)
            print(f"shared {args.run_folder} with the class: {shared}")
        elif args.command == "class":
            print(teaching("classroom", "class").class_table(args.class_folder))
    except SegkitError as error:
        print(f"segkit: error: {one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as error:
        print(f"segkit: {one_line(error) if str(error) else 'interrupted'}; run the same command again to resume "
              f"from the last checkpoint", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

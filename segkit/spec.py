"""What a run is, in one frozen object: ``RunSpec`` (recipe, profile, data, seed, duration, weights).

The command line, the notebooks' ``Job`` and ``segkit.train`` all build a ``RunSpec``. A run's defaults
(recipe, profile, save folder, seed) live here only, and so do the rules derived from a spec: the run's
folder name, the steps per epoch on its data, the recipe scaled to its profile, and the checks that a run
can start (a profile that needs real data gets it, a duration parses, a weights file exists).
Plain Python: nothing here imports Composer.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from segkit import recipes
from segkit.errors import ConfigError
from segkit.processes import run_launcher
from segkit.profiles import Profile, get_profile
from segkit.recipes import Recipe

#: What a run is when nothing says otherwise: the command line, the notebooks' Job and ``run_spec`` read these.
DEFAULT_RECIPE = "baseline"
DEFAULT_PROFILE = "cpu"  # minutes on 2 CPU cores, on the built-in scenes
DEFAULT_SAVE_FOLDER = "runs"
DEFAULT_SEED = 17  # the reference seed (mosaicml/examples deeplab yaml)
#: A run's length override: a number of batches or epochs.
_DURATION = re.compile(r"^([1-9][0-9]*)(ba|ep)$")
#: Backbone initializations by name (anything else must be a weights file).
NAMED_WEIGHTS = ("none", "imagenet", "scenes")


@dataclass(frozen=True)
class RunSpec:
    """One training run, before it starts. Build it with ``run_spec(...)``, which resolves names.

    Example:
        >>> spec = run_spec("mild", profile="tiny", seed=3)
        >>> spec.run_name, spec.data
        ('mild-tiny-seed3', 'scenes')
    """

    recipe: Recipe  # at the reference scale; scale() maps it onto the profile
    profile: Profile  # how big: cpu, scratch, gpu, a100, tiny or a custom one
    data: str = "scenes"  # "scenes" (the built-in set) or the folder holding images/ and annotations/
    seed: int = DEFAULT_SEED  # seeds model init, data order, augmentation and algorithms
    duration: str | None = None  # overrides the scaled recipe's length: "2ba" or "10ep"
    weights: str | None = None  # backbone init overriding the profile's: none, imagenet, scenes or a .pth

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed must be an integer in [0, 2**32), got {self.seed!r}")
        if self.duration is not None and not _DURATION.match(str(self.duration)):
            raise ConfigError(f"duration {self.duration!r} must be a positive number of batches or epochs, "
                              f"like '2ba' or '10ep'")
        if self.data == "scenes" and self.profile.default_data != "scenes":
            raise needs_data(self.profile)
        if self.weights not in (None, *NAMED_WEIGHTS) and not Path(self.weights).expanduser().is_file():
            raise ConfigError(f"weights {self.weights!r} is not one of {', '.join(NAMED_WEIGHTS)} or an "
                              f"existing .pth file")

    @property
    def backbone_weights(self) -> str | None:
        """The backbone init this run asks for: the ``weights`` override, else the profile's."""
        return self.weights if self.weights is not None else self.profile.weights

    @property
    def run_name(self) -> str:
        """``RECIPE-PROFILE-seedSEED``, plus ``-DURATION`` when the length is overridden; a recipe that is
        not exactly a named one carries a digest of its settings (``recipes.run_name_settings``), so two edits
        never share a folder."""
        name = self.recipe.name
        if name not in recipes.RECIPES or recipes.get(name) != self.recipe:
            name = f"{name}-{hashlib.sha1(recipes.run_name_settings(self.recipe).encode()).hexdigest()[:8]}"
        return default_run_name(name, self.profile.name, self.seed, self.duration or "")

    def data_folder(self) -> Path:
        """The data folder (the built-in scenes are generated on first use)."""
        if self.data == "scenes":
            from segkit.scenes import builtin_scenes

            return builtin_scenes(train_images=self.profile.scenes_train_images,
                                  val_images=self.profile.scenes_val_images)
        return Path(self.data).expanduser()

    def steps_per_epoch(self, world_size: int = 1) -> int:
        """Optimizer steps per epoch: the training images split over ``world_size`` processes (the
        sampler drops the remainder), then in batches of the per-device batch (the last partial one dropped)."""
        if self.data == "scenes":
            images = self.profile.scenes_train_images
        else:
            from segkit.data import open_dataset  # torch-free callers (the CLI's parser) never get here

            images = len(open_dataset(self.data_folder(), "training"))
        return (images // world_size) // (self.profile.global_batch_size // world_size)

    def scaled_recipe(self, world_size: int = 1) -> Recipe:
        """The recipe as it runs on this spec's profile and data (``segkit.recipes.scale``)."""
        return recipes.scale(self.recipe, self.profile, steps_per_epoch=max(1, self.steps_per_epoch(world_size)))

    def train_argv(self, run_name: str, save_folder: str, recipe_file: str) -> list[str]:
        """``segkit train`` arguments that run this spec in one launched process (recipe from ``recipe_file``)."""
        argv = ["train", "--recipe", recipe_file, "--profile", self.profile.name, "--data", self.data,
                "--run-name", run_name, "--save-folder", save_folder, "--seed", str(self.seed)]
        argv += ["--duration", self.duration] if self.duration else []
        argv += ["--weights", self.weights] if self.weights else []
        return argv


@dataclass(frozen=True)
class Launch:
    """How many processes train one run, and on which machines: Composer's launcher's settings.

    One process per GPU (DDP over NCCL); on a CPU profile the processes talk gloo, which is how the
    kit runs the multi-GPU path without a GPU. With ``nodes`` above 1 the same command runs on every
    machine, each with its own ``node_rank``, all naming node 0 as ``master_addr:master_port``.

    Example:
        >>> Launch(gpus=8, nodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29500).world_size
        16
    """

    gpus: int = 1  # processes on this machine (one per GPU; gloo processes on a CPU profile)
    nodes: int = 1  # machines training the run together
    node_rank: int = 0  # this machine's index, 0 .. nodes - 1 (under Slurm: $SLURM_NODEID)
    master_addr: str = "127.0.0.1"  # node 0's address, reachable from every node
    master_port: int = 0  # a free TCP port on node 0; 0 = a random free one (one machine only)

    def __post_init__(self) -> None:
        for name in ("gpus", "nodes"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if not 0 <= self.node_rank < self.nodes:
            raise ConfigError(f"node_rank must be in 0 .. {self.nodes - 1} (nodes is {self.nodes}), "
                              f"got {self.node_rank}")
        if not 0 <= self.master_port < 65536:
            raise ConfigError(f"master_port must be a TCP port (1-65535), got {self.master_port}")
        if self.nodes > 1 and (not self.master_port or not self.master_addr):
            raise ConfigError("more than one node needs master_addr and master_port: node 0's address and a free "
                              "port on it, the same on every node (docs/distributed.md)")

    @property
    def world_size(self) -> int:
        return self.gpus * self.nodes

    def command(self, argv: Sequence[str]) -> list[str]:
        """``segkit ARGV`` under Composer's launcher, ``gpus`` processes on this node."""
        command = [sys.executable, "-m", "composer.cli.launcher", "-n", str(self.gpus),
                   "--world_size", str(self.world_size), "--node_rank", str(self.node_rank),
                   "--base_rank", str(self.node_rank * self.gpus), "--master_addr", self.master_addr]
        command += ["--master_port", str(self.master_port)] if self.master_port else []
        return [*command, "-m", "segkit", *argv]

    def run(self, argv: Sequence[str], on_line: Callable[[str], None] | None = None) -> int:
        """Run ``command(argv)`` until the launcher ends, and its processes with it
        (``segkit.processes.run_launcher``); returns the launcher's exit status."""
        return run_launcher(self.command(argv), on_line)


def plan_launch(profile: Profile, gpus: int | None = None, nodes: int = 1, node_rank: int = 0,
                master_addr: str = "127.0.0.1", master_port: int = 0) -> Launch:
    """The launch of a run on ``profile``: ``gpus`` processes per node (None or 0: every visible GPU on
    a GPU profile, one on the CPU), checked against the profile's global batch.

    Raises:
        ConfigError: no GPU for a GPU profile, more GPUs asked for than this machine has, or a global
            batch that does not split over the processes; the message says what to pass.
    """
    from segkit.devices import check_processes, default_processes

    try:
        processes = gpus or default_processes(profile.device)
    except ConfigError as error:
        raise ConfigError(f"profile {profile.name!r} {error}") from None
    launch = Launch(processes, nodes, node_rank, master_addr, master_port)
    check_processes(profile.device, launch.gpus)
    if profile.global_batch_size % launch.world_size:
        fits = [n for n in range(1, launch.gpus + 1) if profile.global_batch_size % (n * launch.nodes) == 0]
        raise ConfigError(f"profile {profile.name!r}: its global batch {profile.global_batch_size} does not split over "
                          f"{launch.world_size} processes ({launch.nodes} node(s) x {launch.gpus}); pass gpus "
                          f"{fits[-1]} (or another divisor of {profile.global_batch_size // launch.nodes})")
    return launch


def launched() -> bool:
    """Whether this process is one that a launcher started (Composer's, or torchrun): they set
    ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE`` in each process they start. Schedulers export
    ``WORLD_SIZE`` or ``RANK`` for a whole job, so those do not tell."""
    return "LOCAL_RANK" in os.environ and "LOCAL_WORLD_SIZE" in os.environ


def needs_data(profile: Profile) -> ConfigError:
    """The error of a profile with no built-in data (a100, gpu) run without a data folder."""
    return ConfigError(f"profile {profile.name!r} trains on ADE20k: pass the folder of an extracted "
                       f"ADEChallengeData2016 as data (--data, or data_root in a notebook)")


def run_spec(recipe: str | Path | Recipe = DEFAULT_RECIPE, profile: str | Profile = DEFAULT_PROFILE,
             data: str | Path | None = None, seed: int = DEFAULT_SEED, duration: str | None = None,
             weights: str | None = None) -> RunSpec:
    """A ``RunSpec`` from names: a recipe name or YAML file, a profile name; ``data=None`` means the
    profile's default (the built-in scenes on cpu and tiny; a100 and gpu need a folder)."""
    profile = get_profile(profile)
    recipe = recipe if isinstance(recipe, Recipe) else recipes.load(recipe)
    if data is None:
        if profile.default_data is None:
            raise needs_data(profile)
        data = profile.default_data
    data = data if str(data) == "scenes" else str(Path(data).expanduser())
    return RunSpec(recipe=recipe, profile=profile, data=str(data), seed=seed, duration=duration or None,
                   weights=weights or None)


def default_run_name(recipe: str, profile: str, seed: int, duration: str = "") -> str:
    """``RECIPE-PROFILE-seedSEED``, plus ``-DURATION`` when the length is overridden.

    Example:
        >>> default_run_name("hot", "cpu", 17), default_run_name("baseline", "tiny", 3, "2ba")
        ('hot-cpu-seed17', 'baseline-tiny-seed3-2ba')
    """
    return f"{recipe}-{profile}-seed{seed}" + (f"-{duration}" if duration else "")

"""segkit: DeepLabV3+ on ADE20k with MosaicML's segmentation recipes, from a laptop to 8xA100.

The public API, by the box of a run it belongs to:

- data: ``open_dataset`` (any format of ``segkit.data.DATASET_FORMATS``), ``ADE20k`` (the
  ADEChallengeData2016 layout), ``write_scenes`` (the built-in set)
- model: ``build_model`` (any architecture of ``segkit.model.ARCHITECTURES``), ``deeplabv3plus``
- loss: ``SegmentationLoss`` (0.375 CE + 1.125 Dice)
- recipes: ``segkit.recipes`` (``baseline``, ``mild``, ``medium``, ``hot``, ``scale``), ``Recipe``
- profiles: ``get_profile`` (``cpu``, ``scratch``, ``gpu``, ``a100``, ``tiny``)
- a run: ``RunSpec``/``run_spec`` (recipe, profile, data, seed, duration, weights), ``train`` (the engine)
- inference: ``evaluate``, ``load_model``
- runs: ``Run`` (a run folder as data), ``find_runs``
"""

from segkit import recipes
from segkit.data import ADE20k, open_dataset
from segkit.errors import ConfigError, DataError, RunError, SegkitError, WeightsError
from segkit.inference import evaluate, load_model
from segkit.losses import SegmentationLoss
from segkit.model import build_model, deeplabv3plus
from segkit.profiles import Profile, get_profile
from segkit.recipes import Recipe
from segkit.runs import Run, find_runs
from segkit.scenes import write_scenes
from segkit.spec import RunSpec, run_spec


def __getattr__(name: str):
    # ``segkit.train`` loads the engine, and with it Composer, only when it is first used, so that
    # ``import segkit.teaching.gallery`` (pictures, widgets) stays plain PyTorch.
    if name == "train":
        from segkit.engine import train

        return train
    raise AttributeError(f"module 'segkit' has no attribute {name!r}")


__all__ = [
    "ADE20k", "ConfigError", "DataError", "Profile", "Recipe", "Run", "RunError", "RunSpec", "SegkitError",
    "SegmentationLoss", "WeightsError", "build_model", "deeplabv3plus", "evaluate", "find_runs", "get_profile",
    "load_model", "open_dataset", "recipes", "run_spec", "train", "write_scenes",
]

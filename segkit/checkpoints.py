"""Checkpoints and weights files: read without running pickled code, checked against the model.

A checkpoint is Composer's training state (``{"state": ..., "rng": ...}``, written atomically by
``segkit.engine.save_checkpoint``) so that Composer's ``Trainer(load_path=...)`` resumes it.
Composer reads the file it is given with ``torch.load(weights_only=False)``, which runs whatever
code a pickle names. So Composer is never given the run folder's file: ``checked_copy`` reads it
once into a folder only this user can write, checks that copy with ``weights_only=True`` (a file
that would need code to unpickle, a truncated file, or one from another model is refused with a
``WeightsError`` naming it, and nothing is executed) and hands Composer the copy, the bytes that
were checked. A file swapped into the run folder after that read is never opened.
"""

from __future__ import annotations

import contextlib
import datetime
import pickle
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.torch_version import TorchVersion

from segkit.errors import WeightsError

#: What a Composer checkpoint holds besides tensors and builtins: NumPy's RNG state (an array),
#: the timestamp's durations and the torch version string. None of them runs code when rebuilt.
_SAFE_GLOBALS = [np.ndarray, np.dtype, np.dtypes.UInt32DType, np._core.multiarray._reconstruct,
                 datetime.timedelta, TorchVersion]


def safe_load(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True`` (plus NumPy's array types); errors name the file."""
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist")
    return _safe_load(path, path)


def _safe_load(source: Path, path: Path) -> Any:
    """``safe_load`` of ``source``, a private copy of ``path`` or ``path`` itself; errors name ``path``."""
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "unsafe content"
        raise WeightsError(f"{path} holds objects that loading would have to execute ({first_line}); "
                           f"segkit only loads tensors and plain data: use a checkpoint written by segkit") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        raise WeightsError(f"{path} is truncated or not a PyTorch file ({str(error).splitlines()[0]}); "
                           f"restore it or delete it to start over") from None


def _check_matches(weights: dict[str, torch.Tensor], module: torch.nn.Module, path: Path) -> None:
    expected = module.state_dict()
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    wrong = [key for key in expected if key in weights and weights[key].shape != expected[key].shape]
    if missing or unexpected or wrong:
        key = (wrong or missing or unexpected)[0]
        detail = (f"{key} has shape {tuple(weights[key].shape)}, the model needs {tuple(expected[key].shape)}"
                  if wrong else f"{'missing' if missing else 'unexpected'} key {key}")
        raise WeightsError(f"{path} is from another model ({detail}); check the run's backbone, "
                           f"profile and number of classes")


@contextlib.contextmanager
def checked_copy(path: Path, model: torch.nn.Module) -> Iterator[Path]:
    """A private copy of the Composer checkpoint at ``path``, checked to be safe and to fit ``model``, for Composer
    to load.

    ``path`` is opened once and copied into a new folder that only this user can write (``mkdtemp``: mode
    0700, in the system's temporary folder, never the run folder, whose entries anyone who can write it may
    rename). The copy is checked and yielded; the folder is removed on exit, so load it inside the ``with``.
    Errors name ``path``.

    Example:
        ``with checked_copy(run / "checkpoints" / "latest.pt", model) as copy: Trainer(load_path=str(copy), ...)``
    """
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist")
    with tempfile.TemporaryDirectory(prefix="segkit-checkpoint-") as private:
        copy = Path(private) / path.name
        try:
            source = open(path, "rb")  # noqa: SIM115 - its errors are told apart from the copy's below
        except OSError as error:
            raise WeightsError(f"cannot read checkpoint {path} ({error.strerror or error}); make it readable, "
                               f"or delete it to start over") from None
        try:
            with source, open(copy, "wb") as target:
                shutil.copyfileobj(source, target)
        except OSError as error:
            raise WeightsError(f"cannot copy checkpoint {path} to {private} to check it ({error.strerror or error}); "
                               f"free space there, or point TMPDIR at a local folder with room") from None
        _check_checkpoint(_safe_load(copy, path), model, path)
        yield copy


def _check_checkpoint(checkpoint: Any, model: torch.nn.Module, path: Path) -> None:
    weights = checkpoint.get("state", {}).get("model") if isinstance(checkpoint, dict) else None
    if not isinstance(weights, dict):
        raise WeightsError(f"{path} is not a segkit training checkpoint (it has no model state)")
    _check_matches(weights, model, path)


def load_weights(path: Path, module: torch.nn.Module) -> None:
    """Load a plain weights file (a run's ``model.pt``) into ``module``, checking it fits.

    A ``model.pt`` written by a multi-process run before segkit saved the bare network's keys has
    every key under ``module.``: it is read as the bare network's.
    """
    weights = safe_load(path)
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise WeightsError(f"{path} is not a weights file (a state dict of tensors)")
    expected = module.state_dict()
    if weights and all(key.startswith("module.") for key in weights) and not any(k in expected for k in weights):
        weights = {key.removeprefix("module."): value for key, value in weights.items()}
    _check_matches(weights, module, path)
    module.load_state_dict(weights)

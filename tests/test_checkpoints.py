"""Loading checkpoints and weights files: tensors only, nothing executed, a mismatch named."""

from __future__ import annotations

import pickle

import pytest
import torch

from segkit.checkpoints import check_loadable, load_weights, safe_load
from segkit.errors import WeightsError


class Boom:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('executed').write_text('yes')",))


def test_weights_round_trip_and_a_mismatch_is_named(tmp_path):
    source, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    torch.save(source.state_dict(), tmp_path / "model.pt")
    load_weights(tmp_path / "model.pt", target)
    assert torch.equal(source.weight, target.weight)
    with pytest.raises(WeightsError, match=r"weight has shape \(2, 3\), the model needs \(4, 3\)"):
        load_weights(tmp_path / "model.pt", torch.nn.Linear(3, 4))


def test_pickled_code_is_refused_and_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "evil.pt", "wb") as file:
        torch.save({"state": {"model": Boom()}}, file, pickle_module=pickle)
    with pytest.raises(WeightsError, match="holds objects that loading would have to execute"):
        safe_load(tmp_path / "evil.pt")
    assert not (tmp_path / "executed").exists()


def test_truncated_and_missing_files(tmp_path):
    torch.save({"w": torch.zeros(100)}, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or not a PyTorch file"):
        safe_load(tmp_path / "cut.pt")
    with pytest.raises(WeightsError, match="does not exist"):
        safe_load(tmp_path / "none.pt")


def test_a_checkpoint_needs_model_state(tmp_path):
    torch.save({"state": {}}, tmp_path / "latest.pt")
    with pytest.raises(WeightsError, match="not a segkit training checkpoint"):
        check_loadable(tmp_path / "latest.pt", torch.nn.Linear(1, 1))
    model = torch.nn.Linear(1, 1)
    torch.save({"state": {"model": model.state_dict()}}, tmp_path / "latest.pt")
    check_loadable(tmp_path / "latest.pt", model)

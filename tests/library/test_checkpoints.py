"""Loading checkpoints and weights files: tensors only, nothing executed, a mismatch named."""

from __future__ import annotations

import pickle
import re
import stat

import pytest
import torch

from segkit.checkpoints import checked_copy, load_weights, safe_load
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


def test_a_checkpoint_needs_model_state_that_fits(tmp_path):
    path, model = tmp_path / "latest.pt", torch.nn.Linear(1, 1)
    torch.save({"state": {}}, path)
    with pytest.raises(WeightsError, match="not a segkit training checkpoint"), checked_copy(path, model):
        pass
    torch.save({"state": {"model": model.state_dict()}}, path)
    other = r"latest.pt is from another model \(weight has shape \(1, 1\), the model needs \(2, 1\)\)"
    with pytest.raises(WeightsError, match=other), checked_copy(path, torch.nn.Linear(1, 2)):
        pass
    with checked_copy(path, model) as copy:
        assert copy.read_bytes() == path.read_bytes()


def test_the_checked_copy_is_private_and_holds_the_bytes_read(tmp_path, monkeypatch):
    """What Composer loads is a copy in a folder only this user can write, made by the one read of the file:
    replacing the file afterwards changes nothing in the copy, and the copy is gone after the ``with``."""
    monkeypatch.chdir(tmp_path)
    model = torch.nn.Linear(2, 2)
    path = tmp_path / "latest.pt"
    torch.save({"state": {"model": model.state_dict()}}, path)
    checked = path.read_bytes()
    with checked_copy(path, model) as copy:
        assert copy.parent != path.parent and stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
        with open(path, "wb") as file:  # swapped after the check
            torch.save({"state": {"model": Boom()}}, file, pickle_module=pickle)
        assert copy.read_bytes() == checked
        torch.load(copy, weights_only=False)  # as Composer loads it: nothing of the swapped file runs
    assert not copy.exists() and not copy.parent.exists()
    assert not (tmp_path / "executed").exists()
    unsafe = "^" + re.escape(f"{path} holds objects that loading would have to execute")
    with pytest.raises(WeightsError, match=unsafe), checked_copy(path, model):
        pass
    assert not (tmp_path / "executed").exists()
    torch.load(path, weights_only=False)  # the swapped file is live: loaded without the check, it runs
    assert (tmp_path / "executed").read_text() == "yes"


def test_no_room_for_the_private_copy_is_one_line(tmp_path, monkeypatch):
    import errno
    import shutil

    model = torch.nn.Linear(2, 2)
    path = tmp_path / "latest.pt"
    torch.save({"state": {"model": model.state_dict()}}, path)

    def full(source, target):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", full)
    no_room = (r"cannot copy checkpoint .*latest.pt to .*segkit-checkpoint-.* to check it \(No space left on "
               r"device\); free space there, or point TMPDIR at")
    with pytest.raises(WeightsError, match=no_room), checked_copy(path, model):
        pass

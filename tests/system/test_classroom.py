"""The class table (``segkit.teaching.classroom``): learners on separate Unix accounts publish finished runs to one
folder and read the room's; no one can overwrite or pass off another's entry."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from segkit.errors import ConfigError, RunError
from segkit.runs import Run
from segkit.teaching import classroom
from tests.accounts import unix_accounts
from tests.conftest import REPO

#: A learner's first run: the tiny profile, two steps.
TRAIN = ("-m", "segkit", "train", "--profile", "tiny", "--duration", "2ba")
RUN_NAME = "baseline-tiny-seed17-2ba"


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    """Two learners who each trained a tiny run, and the class folder as the guide makes it (1777)."""
    with unix_accounts(("ada", "grace")) as (accounts, _):
        folder = accounts["ada"].home.parent / "segkit-class"
        folder.mkdir()
        folder.chmod(0o1777)
        cache = accounts["ada"].home.parent / "segkit-data"
        cache.mkdir()
        cache.chmod(0o1777)
        for account in accounts.values():
            trained = account.run(sys.executable, *TRAIN, PYTHONPATH=str(REPO), SEGKIT_DATA=str(cache))
            assert trained.returncode == 0, trained.stderr
        yield accounts, folder


def segkit(account, *args: str, folder: Path):
    return account.run(sys.executable, "-m", "segkit", *args, PYTHONPATH=str(REPO), SEGKIT_CLASS=str(folder))


def test_learners_share_their_runs_and_each_reads_the_room_s(room):
    accounts, folder = room
    ada, grace = accounts["ada"], accounts["grace"]
    for account in (ada, grace):
        shared = segkit(account, "share", f"runs/{RUN_NAME}", folder=folder)
        assert shared.returncode == 0, shared.stderr
        entry = folder / f"{account.name}--{RUN_NAME}.json"
        assert shared.stdout.strip().endswith(str(entry)) and entry.stat().st_uid == account.uid
        final = Run.load(account.home / "runs" / RUN_NAME).final
        assert json.loads(entry.read_text())["miou"] == round(final["miou"], 2)

    table = segkit(grace, "class", folder=folder)
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if RUN_NAME in line]
    assert sorted(line.split()[3] for line in rows) == sorted([ada.name, grace.name]), table.stdout
    assert all(line.startswith("baseline (tiny, 2ba)") for line in rows), rows
    assert "not verified" not in table.stdout


def test_no_learner_can_overwrite_or_pass_off_another_s_entry(room):
    accounts, folder = room
    ada, grace = accounts["ada"], accounts["grace"]
    assert segkit(ada, "share", f"runs/{RUN_NAME}", folder=folder).returncode == 0
    theirs = folder / f"{ada.name}--{RUN_NAME}.json"
    before = theirs.read_bytes()
    # Writing into it, replacing it, deleting it: all refused by the file's mode and the folder's sticky bit.
    for code in (f"open({str(theirs)!r}, 'w').write('{{}}')",
                 f"import os; open('x.json', 'w').write('{{}}'); os.replace('x.json', {str(theirs)!r})",
                 f"import os; os.remove({str(theirs)!r})"):
        attempt = grace.python(code, SEGKIT_CLASS=str(folder))
        assert "PermissionError" in attempt.stderr or "OSError" in attempt.stderr, (code, attempt.stderr)
    # Sharing under ada's name from grace's account: one line, nothing changed.
    squat = grace.python("from segkit.teaching import classroom; "
                         f"classroom.share('runs/{RUN_NAME}', learner={ada.name!r})", SEGKIT_CLASS=str(folder))
    assert f"cannot write {theirs}: it belongs to {ada.name}, not to {grace.name}" in squat.stderr
    assert theirs.read_bytes() == before
    # A file grace made under a name ada has not used yet is shown, but not as ada's.
    fake = folder / f"{ada.name}--made-up.json"
    made = grace.python(f"import json; data = json.load(open({str(theirs)!r})); data['miou'] = 99.0; "
                        f"data['run_name'] = 'made-up'; json.dump(data, open({str(fake)!r}, 'w'))")
    assert made.returncode == 0, made.stderr
    table = segkit(ada, "class", folder=folder).stdout
    made_up = [line for line in table.splitlines() if "made-up" in line]
    assert len(made_up) == 1 and f"{ada.name} (not verified)" in made_up[0], table
    assert 99.0 not in [entry.miou for entry in classroom.read_entries(folder) if entry.verified]
    fake.unlink()


def test_an_unfinished_run_and_a_missing_folder_are_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv(classroom.CLASS_VARIABLE, raising=False)
    with pytest.raises(ConfigError, match=r"no class folder: set SEGKIT_CLASS"):
        classroom.class_folder()
    with pytest.raises(ConfigError, match=r"does not exist; the instructor makes it once"):
        classroom.class_folder(tmp_path / "nowhere")
    run = Run(tmp_path / "run", {"run_name": "run", "status": "running"}, [])
    run.folder.mkdir()
    run.write()
    with pytest.raises(RunError, match=r"is running: share it once it has finished"):
        classroom.share(run.folder, tmp_path)


def test_groups_by_what_was_trained_with_the_spread_across_learners(room, tmp_path, monkeypatch):
    """Entries of several learners, built from one real run with known final mIoUs: rows grouped by what
    was trained, the reader's own in bold, and each group's mean and standard deviation across learners.
    The learners are one Unix account here, as on Zero to JupyterHub, where the hub names each one."""
    monkeypatch.setenv("JUPYTERHUB_USER", "bob")
    accounts, _ = room
    original = accounts["ada"].home / "runs" / RUN_NAME
    folder = tmp_path / "class"
    folder.mkdir()
    for learner, miou, dice in (("ann", 30.0, None), ("bob", 34.0, None), ("cy", 32.0, None), ("dee", 20.0, 0.0)):
        copy = tmp_path / learner / RUN_NAME
        shutil.copytree(original, copy)
        run = Run.load(copy)
        run.history[-1]["miou"] = miou
        if dice is not None:
            run.info["recipe"]["dice_weight"] = dice
        run.write()
        classroom.share(copy, folder, learner=learner)
    table = classroom.class_table(folder)
    assert table.column("trained") == ["baseline (tiny, 2ba)"] * 3 + ["baseline, dice_weight=0.0 (tiny, 2ba)"]
    assert table.column("learner") == ["bob", "cy", "ann", "dee"]
    assert table.highlight == [True, False, False, False]
    assert table.column("group mean ± spread")[:3] == ["32.00 ± 2.00 (n=3)"] * 3 and table.column(
        "group mean ± spread")[3] == ""
    assert any("widest here: 2.00" in note for note in table.notes)
    figure = classroom.class_figure(folder)
    yours = next(trace for trace in figure.data if trace.name == "yours")
    assert list(yours.y) == [34.0] and yours.marker.line.width == 3


def test_share_and_show_shares_finished_runs_or_says_how_to_set_a_class_folder_up(room, tmp_path, monkeypatch,
                                                                                  capsys):
    monkeypatch.setenv("JUPYTERHUB_USER", "ann")
    monkeypatch.delenv(classroom.CLASS_VARIABLE, raising=False)
    run = Run.load(room[0]["ada"].home / "runs" / RUN_NAME)
    classroom.share_and_show([run])
    assert capsys.readouterr().out.startswith("No class table here: no class folder: set SEGKIT_CLASS")
    classroom.share_and_show([run], tmp_path)
    assert capsys.readouterr().out.startswith(f"shared {RUN_NAME} as ann--{RUN_NAME}.json")
    assert [entry.learner for entry in classroom.read_entries(tmp_path)] == ["ann"]

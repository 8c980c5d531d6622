"""Run folders: atomic writes, names, the lock, resume checks and reading runs back."""

from __future__ import annotations

import json
import math

import pytest

from segkit.errors import ConfigError, RunError
from segkit.runs import (
    METRICS_FILE,
    Run,
    RunLock,
    RunResult,
    atomic_write,
    check_run_name,
    check_same_run,
    find_runs,
    history_series,
    open_run,
    package_versions,
)


def test_atomic_write_keeps_the_previous_file_when_writing_fails(tmp_path):
    path = tmp_path / "file.bin"
    atomic_write(path, lambda file: file.write(b"first"))

    def fail(file):
        file.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(RunError, match="the disk is full; the previous version of the file is intact"):
        atomic_write(path, fail)
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]  # no temporary left behind


@pytest.mark.parametrize("name", ["", "../up", "a b", "-dash", "x" * 101])
def test_bad_run_names(name):
    with pytest.raises(ConfigError, match="run name"):
        check_run_name(name)


def test_a_second_lock_on_the_same_folder_is_refused(tmp_path):
    with RunLock(tmp_path), pytest.raises(RunError, match="being trained by another process"), RunLock(tmp_path):
        pass
    with RunLock(tmp_path):  # released on exit
        pass


def info(**changes):
    return {"recipe": {"name": "mild"}, "profile": {"name": "tiny"}, "seed": 1, "duration": "2ba",
            "data": {"root": "/data"}, "status": "running", **changes}


def test_a_file_system_without_locks_is_refused_in_one_line_or_skipped_on_request(tmp_path, monkeypatch):
    import errno

    from segkit import runs

    def no_locks(file, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(runs.fcntl, "flock", no_locks)
    no_lock = r"its file system does not support locks \(No locks available\); put --save-folder on a local disk"
    with pytest.raises(RunError, match=no_lock + r", or set SEGKIT_NO_RUN_LOCK=1"), RunLock(tmp_path):
        pass
    monkeypatch.setenv("SEGKIT_NO_RUN_LOCK", "1")
    with RunLock(tmp_path):
        pass


@pytest.mark.parametrize("text", [b"{not json", b"[1, 2]", b'{"status": "caf\xe9"}'])
def test_a_corrupt_metrics_file_says_what_to_do(tmp_path, text):
    (tmp_path / METRICS_FILE).write_bytes(text)
    with pytest.raises(RunError, match=r"metrics.json is not valid JSON \(.+\); delete it and run the same training "
                                       r"command again: it is rebuilt from checkpoints/latest.pt") as raised:
        Run.load(tmp_path)
    assert "\n" not in str(raised.value)


def test_open_run_continues_a_checkpointed_history(tmp_path):
    Run(tmp_path, info=info(), history=[{"step": 1, "miou": 3.0}]).write()
    run, resuming = open_run(tmp_path, info())
    assert not resuming and run.history == []  # no checkpoint: it starts over
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest.pt").write_bytes(b"")
    run, resuming = open_run(tmp_path, info())
    assert resuming and run.history == [{"step": 1, "miou": 3.0}]


@pytest.mark.parametrize(("change", "message"), [
    ({"seed": 2}, "another seed"),
    ({"duration": "3ba"}, "another duration"),
    ({"recipe": {"name": "hot"}}, "another recipe"),
    ({"data": {"root": "/other"}}, "was trained on /data"),
])
def test_another_run_in_the_same_folder_is_refused(tmp_path, change, message):
    with pytest.raises(RunError, match=message):
        check_same_run(info(), info(**change), tmp_path)


def test_find_runs_reads_run_folders_and_skips_broken_ones(tmp_path):
    Run(tmp_path / "a", info=info(), history=[{"epoch": 1, "wall_time": 2.0, "miou": 5.0}]).write()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / METRICS_FILE).write_text("{not json")
    (tmp_path / "empty").mkdir()
    runs = find_runs(tmp_path)
    assert list(runs) == ["a"] and runs["a"].final["miou"] == 5.0 and runs["a"].recipe == "mild"
    assert json.loads((tmp_path / "a" / METRICS_FILE).read_text())["history"][0]["miou"] == 5.0


def test_history_series_and_result_before_the_first_evaluation(tmp_path):
    history = [{"epoch": 1, "wall_time": 2.0, "miou": 5.0}, {"epoch": 2, "wall_time": 4.0, "miou": None}]
    assert history_series(history, "miou") == ([1], [2.0], [5.0])
    result = RunResult.of(Run(tmp_path, info=info()), resumed=False)
    assert math.isnan(result.miou) and math.isnan(result.wall_time)


def test_package_versions_name_what_trained_the_run():
    versions = package_versions()
    assert {"python", "torch", "mosaicml", "segkit"} <= set(versions)

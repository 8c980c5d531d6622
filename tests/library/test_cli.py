"""The ``segkit`` command's own paths: data, recipes, pretrain; each error is one line."""

from __future__ import annotations

from segkit.data import ADE20k
from tests.conftest import run_segkit


def test_data_scenes_writes_the_ade20k_layout(tmp_path):
    done = run_segkit("data", "scenes", "--out", str(tmp_path / "set"), "--train-images", "3", "--val-images", "2",
                      "--seed", "4")
    assert done.returncode == 0, done.stderr
    assert "wrote 3 training and 2 validation scenes" in done.stdout
    assert len(ADE20k(tmp_path / "set", "training")) == 3 and len(ADE20k(tmp_path / "set", "validation")) == 2
    assert (tmp_path / "set" / "objectInfo150.txt").is_file()
    bad = run_segkit("data", "scenes", "--out", str(tmp_path / "x"), "--train-images", "0")
    assert bad.returncode == 2 and bad.stderr.strip() == "segkit: error: --train-images must be at least 1, got 0"


def test_recipes_on_a_profile_show_the_scaled_values():
    done = run_segkit("recipes", "hot", "--profile", "cpu")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(None, 1) for line in done.stdout.splitlines())
    assert lines["epochs"].split()[0] == "75" and lines["sam_rho"].split()[0] == "0.0903"


def test_pretrain_refuses_changed_settings_into_the_cache():
    done = run_segkit("pretrain", "--images", "10")
    assert done.returncode == 2
    assert done.stderr.strip() == ("segkit: error: --images and --epochs change the weights: give --out too "
                                   "(the cache holds the defaults)")


def test_check_data_reads_the_validation_split_before_a_run_folder_is_made(tmp_path, scenes_root):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(scenes_root, data)
    broken = sorted((data / "images" / "validation").iterdir())[-1]
    broken.write_bytes(broken.read_bytes()[:200])  # a truncated JPEG, the last one an evaluation would reach
    args = ("train", "--profile", "tiny", "--duration", "1ba", "--data", str(data),
            "--save-folder", str(tmp_path / "runs"))
    refused = run_segkit(*args, "--check-data")
    assert refused.returncode == 2 and str(broken) in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()
    # Without the check (the tiny profile's default) training starts, and the file fails at the evaluation.
    assert run_segkit(*args, "--no-check-data").returncode == 2 and (tmp_path / "runs").exists()

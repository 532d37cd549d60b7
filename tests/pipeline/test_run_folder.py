"""A run folder belongs to its run: nothing the run did not write is written over, two runs
never share a folder, a mistyped --data is an error, and a failed start leaves nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from conftest import assert_user_error, run_cli, write_tiny_recipe

from compress.pipeline.runstore import LOCK, MARKER


@pytest.fixture()
def recipe(tmp_path, tiny_checkpoint, tiny_data):
    return write_tiny_recipe(tmp_path / "recipe.yaml", tiny_checkpoint, tiny_data,
                             [{"prune": {"ratio": 0.25}}, {"finetune": {"epochs": 1}}])


def test_a_users_recipe_in_out_is_never_written_over(tmp_path, recipe):
    folder = tmp_path / "myexp"
    folder.mkdir()
    mine = folder / "recipe.yaml"
    mine.write_text("# my notes\n" + recipe.read_text())
    before = mine.read_bytes()
    assert_user_error(["run", mine, "--out", folder], f"--out {folder}",
                      "no compress run wrote", "recipe.yaml")
    assert mine.read_bytes() == before and sorted(os.listdir(folder)) == ["recipe.yaml"]


def test_an_out_that_is_a_file_is_refused(tmp_path, recipe):
    target = tmp_path / "taken"
    target.write_text("keep me")
    assert_user_error(["run", recipe, "--out", target], "--out", str(target), "is a file")
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("where, reason", [("tinyy", "no such folder"),
                                           ("recipe.yaml", "is a file")])
def test_a_mistyped_data_is_an_error_not_no_data(tmp_path, recipe, where, reason):
    out = tmp_path / "run"
    assert_user_error(["run", recipe, "--data", tmp_path / where, "--out", out],
                      f"--data {tmp_path / where}", reason)
    assert not out.exists()


def test_a_second_run_into_a_busy_folder_is_refused_and_a_stale_lock_taken_over(tmp_path,
                                                                               recipe):
    out = tmp_path / "run"
    out.mkdir()
    (out / MARKER).touch()
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK).write_text(str(owner.pid))
        assert_user_error(["run", recipe, "--out", out], f"run folder {out}",
                          f"in use by process {owner.pid}")
        assert not (out / "stages").exists()
    finally:
        owner.kill()
        owner.wait()
    code, output = run_cli(["run", recipe, "--out", out])  # its owner is gone: stale
    assert code == 0, output
    assert (out / "report.json").is_file() and not (out / LOCK).exists()


def test_a_run_that_fails_before_any_stage_leaves_no_folder(tmp_path, recipe, tiny_data):
    broken = tmp_path / "broken"
    (broken / "val").mkdir(parents=True)  # no train split
    out = tmp_path / "run"
    code, output = run_cli(["run", recipe, "--data", broken, "--out", out])
    assert code == 2 and output.startswith("error: "), output
    assert not out.exists()


def test_a_run_resumes_from_another_working_folder_and_after_a_move(tmp_path, recipe,
                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, output = run_cli(["run", "recipe.yaml", "--out", "run"])  # relative paths
    assert code == 0, output
    record = yaml.safe_load((tmp_path / "run/stages/01-prune/record.json").read_text())
    assert record["checkpoint"] == "stages/01-prune/model.safetensors"
    monkeypatch.chdir("/")
    code, output = run_cli(["run", tmp_path / "recipe.yaml", "--out", tmp_path / "run",
                            "--resume"])
    assert code == 0 and "report:" in output, output
    (tmp_path / "run").rename(tmp_path / "moved")
    code, output = run_cli(["run", tmp_path / "recipe.yaml", "--out", tmp_path / "moved",
                            "--resume"])
    assert code == 0, output
    assert f"{tmp_path / 'moved'}/report.json" in output

"""The shipped checkpoint on a user's own images of its classes: the 164 train images it
records as held out of its training are not there, so a new held-out split of the same
ratio is drawn from the given images, said in one line, used for the decisions and recorded
in the checkpoints written. A folder that holds part of the recorded split (the same data
with images renamed or removed) is refused with the option that draws a new split."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import REPO, run_cli, write_tiny_recipe
from PIL import Image

from compress.checkpoint import load_checkpoint

SHIPPED = REPO / "checkpoints" / "mnv3_trashnet.safetensors"


def _photos(root, train: dict[str, list[str]], val_per_class: int = 2):
    """ROOT/train/<class>/<name> for the given names and ROOT/val/<class>/val<i>.png: noise
    images of 40x48 px (decisions on them mean nothing; which images they are does)."""
    rng = np.random.default_rng(0)
    val = {name: [f"val{i}.png" for i in range(val_per_class)] for name in train}
    for split, files in (("train", train), ("val", val)):
        for name, names in files.items():
            for file in names:
                path = root / split / name / file
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
    return root


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(SHIPPED)


@pytest.fixture(scope="module")
def own_photos(tmp_path_factory, shipped):
    """Ten photos a class under names of the user's own."""
    return _photos(tmp_path_factory.mktemp("own"),
                   {name: [f"mine{i}.png" for i in range(10)] for name in shipped.classes})


def _new_split_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("held-out split:"))


def test_own_photos_fine_tune_with_a_new_held_out_split_recorded_in_the_result(
        tmp_path, own_photos, shipped):
    code, output = run_cli(["finetune", SHIPPED, "--data", own_photos, "--epochs", "1",
                            "--batch-size", "16", "--out", tmp_path / "ft"])
    assert code == 0, output
    assert _new_split_line(output).startswith(
        f"held-out split: none of the 164 images the checkpoint holds out of training are "
        f"in {own_photos / 'train'}: held out a new 6 of its 60 (10%, stratified, seed 42)")
    result = load_checkpoint(tmp_path / "ft" / "finetuned.safetensors")
    files = result.held_out_files
    assert len(files) == 6 and {f.split("/")[0] for f in files} == set(shipped.classes)
    assert all((own_photos / "train" / f).is_file() for f in files)
    assert result.held_out_split["ratio"] == 0.1 and result.held_out_split["seed"] == 42
    assert shipped.held_out_files[0] not in files  # the input's own record is replaced


def test_a_recipe_on_own_photos_judges_on_the_new_split(tmp_path, own_photos, shipped):
    recipe = write_tiny_recipe(tmp_path / "recipe.yaml", SHIPPED, own_photos,
                               [{"quantize": {"calibration_images": 8, "timing_runs": 10}}])
    code, output = run_cli(["run", recipe, "--out", tmp_path / "run"])
    assert code == 0, output
    assert "held out a new 6 of its 60" in _new_split_line(output)
    stage = json.loads((tmp_path / "run" / "report.json").read_text())["stages"][1]
    assert stage["result"]["checked_on"] == "6 held-out train images"
    recorded = load_checkpoint(tmp_path / "run" / "stages" / "01-quantize" /
                               "model.safetensors").held_out_files
    assert len(recorded) == 6 and all((own_photos / "train" / f).is_file() for f in recorded)


def test_half_the_recorded_split_is_refused_with_the_option_that_draws_a_new_one(
        tmp_path, shipped):
    recorded = shipped.held_out_files
    kept = recorded[::2]  # the same data set with every other held-out image gone
    names: dict[str, list[str]] = {name: [] for name in shipped.classes}
    for file in kept:
        folder, name = file.split("/")
        names[folder].append(name)
    data = _photos(tmp_path / "half", {k: v + ["other.png"] for k, v in names.items()})
    args = ["finetune", SHIPPED, "--data", data, "--epochs", "1", "--batch-size", "32"]
    code, output = run_cli(args + ["--out", tmp_path / "refused"])
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 1, output
    assert lines[0].startswith(f"error: data folder {data / 'train'}: 82 of the 164 held-out "
                               "images the checkpoint records are missing")
    assert "--new-held-out" in lines[0]
    assert not (tmp_path / "refused").exists()

    code, output = run_cli(args + ["--new-held-out", "--out", tmp_path / "ft"])
    assert code == 0, output
    assert _new_split_line(output).startswith("held-out split: 82 of the 164 images")
    files = load_checkpoint(tmp_path / "ft" / "finetuned.safetensors").held_out_files
    assert all((data / "train" / f).is_file() for f in files)

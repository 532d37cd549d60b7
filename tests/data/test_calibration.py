"""The calibration split (CALIBRATION_RATIO): train images held out of training for the
decisions made later on the model, so that val stays for reporting only."""

from __future__ import annotations

import json

import pytest
from conftest import make_image_folder, run_cli, write_train_yamls

from compress.checkpoint import load_checkpoint
from compress.data.config import DataConfig
from compress.data.training_data import calibration_files, train_val_datasets
from compress.errors import UserError


def _config(root, **values) -> DataConfig:
    return DataConfig(data_path=str(root), img_size=32, num_workers=0, **values)


def _paths(dataset) -> set:
    base = dataset.dataset if hasattr(dataset, "indices") else dataset
    indices = dataset.indices if hasattr(dataset, "indices") else range(len(base))
    return {base.samples[i][0] for i in indices}


def test_held_out_images_are_not_trained_on_stratified_and_stable_for_a_seed(tiny_data):
    train, val, _ = train_val_datasets(_config(tiny_data, calibration_ratio=0.25, cache="stream"))
    held_out = calibration_files(_config(tiny_data, calibration_ratio=0.25))
    paths = {tiny_data / "train" / name for name in held_out}
    assert len(held_out) == 9  # a quarter of 3 classes x 12 images
    assert {name.split("/")[0] for name in held_out} == {"blue", "green", "red"}
    assert all(sum(n.startswith(f"{c}/") for n in held_out) == 3
               for c in ("blue", "green", "red"))
    assert not paths & _paths(train) and len(_paths(train)) == 27
    assert not paths & _paths(val) and all(p.is_file() for p in paths)
    assert calibration_files(_config(tiny_data, calibration_ratio=0.25)) == held_out
    assert calibration_files(_config(tiny_data, calibration_ratio=0.25, seed=7)) != held_out
    # CALIBRATION_SEED keeps the split of one seed under another training seed.
    assert calibration_files(_config(tiny_data, calibration_ratio=0.25, seed=7,
                                     calibration_seed=42)) == held_out


def test_without_a_val_folder_calibration_and_val_are_disjoint(tmp_path):
    root = make_image_folder(tmp_path / "only_train", {"train": 20})
    config = _config(root, val_ratio=0.2, calibration_ratio=0.25)
    train, val, _ = train_val_datasets(config)
    held_out = {root / "train" / name for name in calibration_files(config)}
    assert len(_paths(val)) == 12 and len(held_out) == 12 and len(_paths(train)) == 36
    assert not held_out & _paths(val) and not held_out & _paths(train)
    assert not _paths(train) & _paths(val)
    # CALIBRATION_SEED fixes both splits under another training seed.
    other = _config(root, val_ratio=0.2, calibration_ratio=0.25, seed=7, calibration_seed=42)
    assert _paths(train_val_datasets(other)[1]) == _paths(val)
    assert {root / "train" / name for name in calibration_files(other)} == held_out
    with pytest.raises(UserError, match="CALIBRATION_SEED"):
        _config(root, calibration_seed=-1)


@pytest.mark.parametrize("bad", [-0.1, 0.5, True, "a tenth"])
def test_calibration_ratio_is_validated(bad, tmp_path):
    with pytest.raises(UserError, match="CALIBRATION_RATIO"):
        _config(tmp_path, calibration_ratio=bad)


def test_train_records_the_held_out_images_in_the_checkpoint(tmp_path, tiny_data):
    model_yaml, data_yaml = write_train_yamls(tmp_path, tiny_data, CALIBRATION_RATIO=0.25)
    code, output = run_cli(["train", "--model", model_yaml, "--data", data_yaml,
                            "--out", tmp_path / "run"])
    assert code == 0, output
    listed = (tmp_path / "run" / "calibration.txt").read_text().split()
    info = load_checkpoint(tmp_path / "run" / "last.safetensors").info
    assert info["calibration"]["files"] == listed and len(listed) == 9
    assert json.loads(json.dumps(info["calibration"]))["ratio"] == 0.25
    # The same command again resumes the finished run instead of refusing the folder.
    code, output = run_cli(["train", "--model", model_yaml, "--data", data_yaml,
                            "--out", tmp_path / "run"])
    assert code == 0, output
    # --seed overrides SEED: it draws another held-out split and is recorded as such.
    code, output = run_cli(["train", "--model", model_yaml, "--data", data_yaml, "--seed", 7,
                            "--out", tmp_path / "seed7"])
    assert code == 0, output
    info = load_checkpoint(tmp_path / "seed7" / "last.safetensors").info
    assert info["data"]["seed"] == info["calibration"]["seed"] == 7
    assert len(info["calibration"]["files"]) == 9 and info["calibration"]["files"] != listed


def test_a_checkpoints_held_out_images_become_the_decision_split(tiny_data):
    from compress.data.training_data import TrainingDataOptions, open_training_data

    held_out = calibration_files(_config(tiny_data, calibration_ratio=0.25))
    recorded = {"ratio": 0.25, "seed": 0, "files": held_out}
    data = open_training_data(tiny_data, ["blue", "green", "red"], 32,
                              TrainingDataOptions(num_workers=0, held_out=recorded))
    assert data.decision_split is data.calibration and len(data.calibration) == 9
    assert {tiny_data / "train" / n for n in held_out} == _paths(data.calibration)
    assert not _paths(data.calibration) & _paths(data.train) and len(data.train) == 27
    assert data.calibration[0][0].shape == (3, 32, 32)  # the test transform
    assert data.held_out_record is recorded  # what the models made from it record
    plain = open_training_data(tiny_data, ["blue", "green", "red"], 32,
                               TrainingDataOptions(num_workers=0))
    assert plain.calibration is None and plain.decision_split is plain.val

    with pytest.raises(UserError, match="1 of the 10 held-out images .* missing.*--new-held-out"):
        open_training_data(tiny_data, ["blue", "green", "red"], 32, TrainingDataOptions(
            num_workers=0, held_out={**recorded, "files": held_out + ["red/not_here.png"]}))

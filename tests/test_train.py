"""The training engine on a tiny model and a tiny folder made in the test."""

from __future__ import annotations

import pytest
import torch

from compress.checkpoint import Checkpoint, load_checkpoint
from compress.data import DataConfig, train_val_datasets
from compress.models import build_model
from compress.train import TrainConfig, fit


def _setup(tiny_data, tiny_model_spec, img_size=32):
    data = DataConfig(data_path=str(tiny_data), img_size=img_size, num_workers=0)
    train_set, val_set, classes = train_val_datasets(data)
    torch.manual_seed(0)
    model = build_model(tiny_model_spec)
    return model, train_set, val_set, Checkpoint(model, tiny_model_spec, classes, img_size)


def test_loss_goes_down_and_the_best_checkpoint_loads(tmp_path, tiny_data, tiny_model_spec):
    model, train_set, val_set, template = _setup(tiny_data, tiny_model_spec)
    config = TrainConfig(epochs=6, lr=0.05, batch_size=8, num_workers=0, device="cpu")
    result = fit(model, train_set, val_set, config, tmp_path, template)
    losses = [row["train_loss"] for row in result.history]
    assert len(losses) == 6 and losses[-1] < losses[0]
    best = load_checkpoint(result.best_path)
    assert best.classes == ["blue", "green", "red"]
    assert best.info["train"]["best_epoch"] == result.best_epoch
    assert best.info["train"]["val_macro_f1"] == pytest.approx(result.best_f1)


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, tiny_data, tiny_model_spec,
                                                          monkeypatch):
    config = TrainConfig(epochs=4, lr=0.05, batch_size=8, num_workers=0, device="cpu")
    model, train_set, val_set, template = _setup(tiny_data, tiny_model_spec)
    fit(model, train_set, val_set, config, tmp_path / "straight", template)

    import compress.train as engine

    calls = {"n": 0}
    real_predict = engine.predict

    def crash_in_epoch_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_predict(*args, **kwargs)

    model, train_set, val_set, template = _setup(tiny_data, tiny_model_spec)
    monkeypatch.setattr(engine, "predict", crash_in_epoch_three)
    with pytest.raises(KeyboardInterrupt):
        fit(model, train_set, val_set, config, tmp_path / "resumed", template)
    assert load_checkpoint(tmp_path / "resumed" / "last.safetensors").model is not None
    monkeypatch.setattr(engine, "predict", real_predict)
    model, train_set, val_set, template = _setup(tiny_data, tiny_model_spec)
    result = fit(model, train_set, val_set, config, tmp_path / "resumed", template)
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]

    straight = load_checkpoint(tmp_path / "straight" / "last.safetensors").model.state_dict()
    resumed = load_checkpoint(tmp_path / "resumed" / "last.safetensors").model.state_dict()
    for key in straight:
        assert torch.allclose(straight[key].float(), resumed[key].float(), atol=1e-5), key


def test_everything_frozen_is_a_user_error(tmp_path, tiny_data, tiny_model_spec):
    from compress.errors import UserError

    model, train_set, val_set, template = _setup(tiny_data, tiny_model_spec)
    model.requires_grad_(False)
    with pytest.raises(UserError, match="frozen"):
        fit(model, train_set, val_set, TrainConfig(epochs=1, num_workers=0, device="cpu"),
            tmp_path, template)


def test_val_ratio_carves_a_stratified_val_split_when_there_is_no_val_folder(tmp_path):
    from conftest import make_image_folder

    root = make_image_folder(tmp_path / "only_train", {"train": 8})
    train, val, classes = train_val_datasets(DataConfig(data_path=str(root), img_size=32,
                                                        val_ratio=0.25, num_workers=0))
    assert (len(train), len(val)) == (18, 6) and classes == ["blue", "green", "red"]
    assert sorted(label for _, label in (val[i] for i in range(len(val)))) == [0, 0, 1, 1, 2, 2]
    from compress.errors import UserError

    with pytest.raises(UserError, match="no val split"):
        train_val_datasets(DataConfig(data_path=str(root), img_size=32, num_workers=0))

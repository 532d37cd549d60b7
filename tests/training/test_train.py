"""The training engine on a tiny model and a tiny folder made in the test."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import interrupt_evaluation, tiny_fit_setup

from compress.checkpoint import load_checkpoint
from compress.data.config import DataConfig
from compress.data.training_data import train_val_datasets
from compress.errors import UserError
from compress.models import build_model
from compress.training.engine import FitInputs, FitRun, TrainConfig, fit


def test_loss_goes_down_and_the_last_epoch_is_kept(tmp_path, tiny_data, tiny_model_spec):
    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    config = TrainConfig(epochs=6, lr=0.05, batch_size=8, num_workers=0, device="cpu")
    result = fit(model, FitInputs(train_set, val_set), config, FitRun(tmp_path, template))
    losses = [row["train_loss"] for row in result.history]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert result.path == tmp_path / "last.safetensors" and result.epoch == 6
    assert result.val_f1 == result.history[-1]["val_macro_f1"]
    kept = load_checkpoint(result.path)
    assert kept.classes == ["blue", "green", "red"]
    assert kept.info["train"]["epoch"] == 6
    assert kept.info["train"]["val_macro_f1"] == pytest.approx(result.val_f1)
    # The model returned in memory is the kept one.
    with torch.no_grad():
        assert torch.equal(model.eval()(torch.ones(1, 3, 32, 32)),
                           kept.model.eval()(torch.ones(1, 3, 32, 32)))


def test_cpu_training_runs_channels_last_and_hands_models_back_contiguous(
        tmp_path, tiny_data, tiny_model_spec):
    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    torch.manual_seed(1)
    teacher = build_model(tiny_model_spec).eval()
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    layouts = []

    def record_training_layout(module, inputs):
        if module.training:
            layouts.append(inputs[0].is_contiguous(memory_format=torch.channels_last))

    first_conv.register_forward_pre_hook(record_training_layout)
    config = TrainConfig(epochs=1, lr=0.05, batch_size=8, num_workers=0, device="cpu")
    fit(model, FitInputs(train_set, val_set, teacher=teacher), config, FitRun(tmp_path, template))
    assert layouts and all(layouts)  # every training step's batch
    for net in (model, teacher):
        assert all(p.is_contiguous() for p in net.parameters())
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key


def test_keep_best_returns_the_best_val_epoch(tmp_path, tiny_data, tiny_model_spec):
    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    config = TrainConfig(epochs=4, lr=0.05, batch_size=8, num_workers=0, device="cpu",
                         keep="best")
    result = fit(model, FitInputs(train_set, val_set), config, FitRun(tmp_path, template))
    scores = [row["val_macro_f1"] for row in result.history]
    assert result.path == tmp_path / "best.safetensors"
    assert result.val_f1 == max(scores) and result.epoch == scores.index(max(scores)) + 1
    assert load_checkpoint(result.path).info["train"]["epoch"] == result.epoch


def test_keep_best_is_judged_on_held_out_images_where_fit_has_them(tmp_path, tiny_data,
                                                                   tiny_model_spec):
    from torch.utils.data import Subset

    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    held_out = Subset(val_set, list(range(0, len(val_set), 2)))  # any other split than val
    config = TrainConfig(epochs=4, lr=0.05, batch_size=8, num_workers=0, device="cpu",
                         keep="best")
    result = fit(model, FitInputs(train_set, val_set, held_out=held_out), config,
                 FitRun(tmp_path, template))
    held_out_scores = [row["held_out_macro_f1"] for row in result.history]
    best = held_out_scores.index(max(held_out_scores)) + 1
    assert result.epoch == result.best_epoch == best and result.best_judged_on == "held-out"
    assert result.val_f1 == result.history[best - 1]["val_macro_f1"]
    assert load_checkpoint(result.path).info["train"]["epoch"] == best


def test_an_unknown_keep_is_a_user_error(tmp_path, tiny_data, tiny_model_spec):
    from compress.errors import UserError

    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    with pytest.raises(UserError, match="keep must be one of last, best"):
        fit(model, FitInputs(train_set, val_set), TrainConfig(epochs=1, keep="first"),
            FitRun(tmp_path, template))


def test_echo_gets_one_line_per_epoch_and_nothing_goes_to_stderr(
        tmp_path, tiny_data, tiny_model_spec, capsys):
    """Library code never prints: a search trial's log gets the lines through `echo`."""
    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    config = TrainConfig(epochs=2, lr=0.05, batch_size=8, num_workers=0, device="cpu")
    lines = []
    fit(model, FitInputs(train_set, val_set), config,
        FitRun(tmp_path, template, echo=lines.append))
    assert [line.split()[:2] for line in lines] == [["epoch", "1/2"], ["epoch", "2/2"]]
    assert all("val macro F1" in line for line in lines)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


@pytest.mark.parametrize("workers", [0, 2])
def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, tiny_data, tiny_model_spec,
                                                          monkeypatch, workers):
    """Bit for bit on CPU, with loader workers too (each epoch's augmentation draws come
    from (seed, epoch), not from workers that lived through the earlier epochs)."""
    config = TrainConfig(epochs=4, lr=0.05, batch_size=8, num_workers=workers, device="cpu")
    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    fit(model, FitInputs(train_set, val_set), config, FitRun(tmp_path / "straight", template))

    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    interrupt_evaluation(monkeypatch, 3)  # in epoch three
    with pytest.raises(KeyboardInterrupt):
        fit(model, FitInputs(train_set, val_set), config, FitRun(tmp_path / "resumed", template))
    assert load_checkpoint(tmp_path / "resumed" / "last.safetensors").model is not None
    monkeypatch.undo()
    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    result = fit(model, FitInputs(train_set, val_set), config,
                 FitRun(tmp_path / "resumed", template))
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]

    straight = load_checkpoint(tmp_path / "straight" / "last.safetensors").model.state_dict()
    resumed = load_checkpoint(tmp_path / "resumed" / "last.safetensors").model.state_dict()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_everything_frozen_is_a_user_error(tmp_path, tiny_data, tiny_model_spec):
    from compress.errors import UserError

    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    model.requires_grad_(False)
    with pytest.raises(UserError, match="frozen"):
        fit(model, FitInputs(train_set, val_set),
            TrainConfig(epochs=1, num_workers=0, device="cpu"), FitRun(tmp_path, template))


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


@pytest.mark.slow
@pytest.mark.processes
def test_two_gloo_processes_take_the_same_steps_and_write_one_checkpoint(tmp_path, tiny_data,
                                                                         tiny_checkpoint):
    """torchrun --nproc_per_node 2 on CPU (gloo): the global batch is split over the two
    processes, so each epoch takes as many optimizer steps as one process does; with a
    weight average, as in one process."""
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO, TINY_CLASSES

    finetune = ["-m", "compress", "finetune", str(tiny_checkpoint), "--data", str(tiny_data),
                "--epochs", "2", "--batch-size", "8", "--lr", "0.05", "--device", "cpu",
                "--ema", "0.9"]  # rank 0 measures the average's statistics, every rank ends so
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {}
    for processes in (1, 2):
        out = tmp_path / f"p{processes}"
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={processes}"] if processes > 1 else [sys.executable]
        done = subprocess.run(launcher + finetune + ["--out", str(out)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.count("kept epoch") == 1, done.stdout  # rank 0 alone reports
        runs[processes] = json.loads((out / "train/history.json").read_text())
    steps = {p: [epoch["steps"] for epoch in history] for p, history in runs.items()}
    assert steps[1] == steps[2] and len(steps[1]) == 2 and steps[1][0] > 1, steps
    assert [epoch["processes"] for epoch in runs[2]] == [2, 2]
    assert all(0 < epoch["ema_decay"] <= 0.9 for epoch in runs[2])
    trained = load_checkpoint(tmp_path / "p2/finetuned.safetensors")
    assert trained.classes == TINY_CLASSES
    with torch.no_grad():
        assert trained.model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    assert sorted(p.name for p in (tmp_path / "p2").iterdir()) == \
        ["finetune.json", "finetuned.safetensors", "train"]


def test_a_batch_that_does_not_split_over_the_processes_is_a_user_error(
        tmp_path, tiny_data, tiny_model_spec, monkeypatch):
    from compress.errors import UserError

    monkeypatch.setenv("WORLD_SIZE", "3")
    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    with pytest.raises(UserError, match="batch size 8 does not split evenly over 3"):
        fit(model, FitInputs(train_set, val_set),
            TrainConfig(epochs=1, batch_size=8, num_workers=0, device="cpu"),
            FitRun(tmp_path, template))


def test_a_folder_holding_another_run_is_refused_not_resumed(tmp_path, tiny_data,
                                                             tiny_model_spec):
    config = TrainConfig(epochs=1, lr=0.05, batch_size=8, num_workers=0, device="cpu")
    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    fit(model, FitInputs(train_set, val_set), config, FitRun(tmp_path, template))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for changed in ({"lr": 0.01}, {"epochs": 2}, {"label_smoothing": 0.1}):
        model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
        with pytest.raises(UserError, match="started with other inputs"):
            fit(model, FitInputs(train_set, val_set), replace(config, **changed),
                FitRun(tmp_path, template))
    other_model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec, img_size=24)
    with pytest.raises(UserError, match="started with other inputs"):  # other transforms
        fit(other_model, FitInputs(train_set, val_set), config, FitRun(tmp_path, template))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # the same inputs again (another device spelling, more loader workers): resumed, done
    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    result = fit(model, FitInputs(train_set, val_set),
                 replace(config, num_workers=2, device="auto"), FitRun(tmp_path, template))
    assert [row["epoch"] for row in result.history] == [1]

"""The recovery options of the training engine on a tiny model and folder: the weight
average, mixup and CutMix, function matching, warmup and cosine, fresh weights."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import (
    assert_user_error,
    interrupt_evaluation,
    run_cli,
    save_tiny_checkpoint,
    tiny_fit_setup,
    write_tiny_recipe,
)
from safetensors.torch import load_file
from torch import nn

from compress.checkpoint import load_checkpoint
from compress.data.folders import make_loader
from compress.measure.metrics import model_macro_f1
from compress.models import build_model
from compress.stages.finetune import fresh_weights
from compress.training.ema import WeightAverage, same_draw
from compress.training.engine import FitInputs, FitRun, TrainConfig, fit
from compress.training.loop import warmup_cosine
from compress.training.mixing import Mixing, mix_batch


def test_the_weight_average_follows_its_formula_with_its_decay_warming_up():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    average = WeightAverage(model, decay=0.9)
    statistics = {k: v.clone() for k, v in average.average.state_dict().items()
                  if "running" in k or "num_batches" in k}
    for updates, decay in enumerate([(1 + n) / (10 + n) for n in range(7)]):
        assert average.current_decay() == pytest.approx(min(0.9, decay))
        before = copy.deepcopy(average.average.state_dict())
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(1.0)
        model.train()(torch.randn(2, 3, 8, 8))  # moves the model's running statistics
        average.update(model)
        for name, kept in average.average.named_parameters():
            now = dict(model.named_parameters())[name]
            assert torch.allclose(kept, decay * before[name] + (1 - decay) * now), name
    average.updates = 80  # (1 + n) / (10 + n) reaches 0.9 at n = 80
    assert average.current_decay() == pytest.approx(0.9)
    average.updates = 100
    assert average.current_decay() == 0.9
    # The statistics are not averaged: they are measured anew for the averaged weights.
    for key, value in statistics.items():
        assert torch.equal(average.average.state_dict()[key], value), key
    state = average.state_dict()
    again = WeightAverage(model, decay=0.9)
    again.load_state_dict(state)
    assert again.updates == 100 and again.current_decay() == 0.9
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


def test_recalibration_measures_the_averages_batchnorm_statistics_on_training_batches(
        monkeypatch):
    import compress.training.ema as ema

    monkeypatch.setattr(ema, "RECALIBRATION_IMAGES", 18)  # four batches of five
    torch.manual_seed(0)
    model = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    average = WeightAverage(model, decay=0.5)
    batches = [torch.randn(5, 3, 8, 8) * 3 + 1 for _ in range(8)]
    assert average.recalibrate(iter(batches), torch.device("cpu")) == 4
    conv, norm = average.average[1], average.average[2]
    with torch.no_grad():
        outputs = [conv(batch) for batch in batches[:4]]  # dropout off: the images as they are
    # momentum None: the plain mean over the batches of each batch's mean and (unbiased) var
    means = torch.stack([o.mean((0, 2, 3)) for o in outputs]).mean(0)
    variances = torch.stack([o.var((0, 2, 3), unbiased=True) for o in outputs]).mean(0)
    assert torch.allclose(norm.running_mean, means, atol=1e-5)
    assert torch.allclose(norm.running_var, variances, rtol=1e-4)
    assert norm.momentum == 0.1 and not average.average.training  # restored
    # No batch at all: the statistics stay as they were.
    measured = norm.running_mean.clone()
    assert average.recalibrate(iter([]), torch.device("cpu")) == 0
    assert torch.equal(norm.running_mean, measured)
    frozen = WeightAverage(model, decay=0.5)
    model[2].running_mean.fill_(3.0)
    frozen.settle(model, iter(batches), torch.device("cpu"), torch.contiguous_format,
                  frozen_statistics=True)
    assert torch.equal(frozen.average[2].running_mean, model[2].running_mean)


@pytest.mark.parametrize("workers", [0, 1])
def test_the_recalibration_draw_is_the_same_at_every_call_and_leaves_training_alone(
        tiny_data, tiny_model_spec, workers):
    _, train_set, _, _ = tiny_fit_setup(tiny_data, tiny_model_spec)
    loader = make_loader(train_set, 4, shuffle=True, num_workers=workers)

    def draw(seed: int) -> list[torch.Tensor]:
        with same_draw(loader, seed) as images:
            return list(images)

    torch.manual_seed(5)
    first = draw(seed=3)
    after_draw = torch.rand(3)
    torch.manual_seed(5)
    again = draw(seed=3)
    assert torch.equal(torch.rand(3), after_draw)  # the global generator was left as it was
    assert len(first) == len(again) > 1
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    # Another seed: other crops or another order (the augmentation is random).
    assert not all(torch.equal(a, b) for a, b in zip(first, draw(seed=4)))


def test_with_ema_every_epoch_recalibrates_on_the_same_images(tmp_path, tiny_data,
                                                              tiny_model_spec, monkeypatch):
    seen = []
    settle = WeightAverage.settle

    def recording(self, model, batches, *args):
        batches = list(batches)
        seen.append(batches)
        return settle(self, model, iter(batches), *args)

    monkeypatch.setattr(WeightAverage, "settle", recording)
    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    config = TrainConfig(epochs=3, lr=0.05, batch_size=8, num_workers=0, device="cpu",
                         ema_decay=0.5)
    fit(model, FitInputs(train_set, val_set), config, FitRun(tmp_path, template))
    assert len(seen) == 3
    assert all(torch.equal(a, b) for later in seen[1:] for a, b in zip(seen[0], later))


def test_with_ema_the_average_is_evaluated_saved_and_kept(tmp_path, tiny_data,
                                                          tiny_model_spec):
    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    config = TrainConfig(epochs=2, lr=0.05, batch_size=8, num_workers=0, device="cpu",
                         ema_decay=0.5)
    result = fit(model, FitInputs(train_set, val_set), config, FitRun(tmp_path, template))
    saved = load_checkpoint(result.path)
    # The model ends as the average, which is what was saved and scored.
    for key, value in saved.model.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
    assert model_macro_f1(saved.model, val_set, saved.classes) == \
        pytest.approx(result.history[-1]["val_macro_f1"])
    tensors = load_file(str(tmp_path / "train_state.safetensors"))
    ema_keys = [k for k in tensors if k.startswith("ema/") and k != "ema/__ema_updates__"]
    raw_keys = [k for k in tensors if k.startswith("model/")]
    assert ema_keys and len(ema_keys) == len(raw_keys)
    assert int(tensors["ema/__ema_updates__"]) == result.history[-1]["steps"] * 2
    # The raw weights (what training continues from) differ from the average.
    assert any(not torch.equal(tensors[f"model/{k[4:]}"], tensors[k]) for k in ema_keys
               if tensors[k].dtype.is_floating_point)
    # The average's BatchNorm statistics were measured for its weights: not the raw model's.
    assert any(not torch.equal(tensors[f"model/{k[4:]}"], tensors[k]) for k in ema_keys
               if "running_" in k)


def test_a_recipes_finetune_with_ema_exports_the_average(tmp_path, tiny_data,
                                                          tiny_checkpoint):
    """The fine-tune stage's model is the average, and the export stage writes it: the
    ONNX file computes the average's logits, not the raw weights' that training ended on."""
    import numpy as np
    import onnxruntime as ort

    recipe = write_tiny_recipe(tmp_path / "ema.yaml", tiny_checkpoint, tiny_data, [
        {"finetune": {"epochs": 2, "lr": 0.05, "ema": 0.5}}, {"export": {}}])
    code, output = run_cli(["run", str(recipe), "--out", str(tmp_path / "run")])
    assert code == 0, output
    stages = tmp_path / "run" / "stages"
    average = load_checkpoint(stages / "01-finetune" / "model.safetensors")
    raw = copy.deepcopy(average.model)
    raw_state = {key.removeprefix("model/"): value for key, value in load_file(
        str(next(stages.glob("01-finetune/**/train_state.safetensors")))).items()
        if key.startswith("model/")}
    raw.load_state_dict(raw_state)
    images = torch.randn(4, 3, average.input_size, average.input_size,
                         generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, trained = average.model.eval()(images), raw.eval()(images)
    assert not torch.allclose(expected, trained, atol=1e-3)  # the average is not the raw model
    session = ort.InferenceSession(str(next(stages.glob("02-export/*.onnx"))),
                                   providers=["CPUExecutionProvider"])
    exported = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    assert np.allclose(exported, expected.numpy(), atol=1e-4)


def test_with_frozen_batchnorm_statistics_the_average_keeps_the_models(tmp_path, tiny_data,
                                                                       tiny_model_spec):
    """Frozen statistics are never measured anew for the average (that would change them)."""
    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}
    config = TrainConfig(epochs=1, lr=0.05, batch_size=8, num_workers=0, device="cpu",
                         ema_decay=0.5, freeze_bn_stats=True)
    result = fit(model, FitInputs(train_set, val_set), config, FitRun(tmp_path, template))
    saved = load_checkpoint(result.path).model.state_dict()
    assert before and all(torch.equal(saved[k], v) for k, v in before.items())


def test_an_interrupted_run_with_ema_resumes_to_the_same_average(tmp_path, tiny_data,
                                                                  tiny_model_spec, monkeypatch):
    config = TrainConfig(epochs=3, lr=0.05, batch_size=8, num_workers=0, device="cpu",
                         ema_decay=0.7)
    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    fit(model, FitInputs(train_set, val_set), config, FitRun(tmp_path / "straight", template))
    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    interrupt_evaluation(monkeypatch, 2)  # in epoch two
    with pytest.raises(KeyboardInterrupt):
        fit(model, FitInputs(train_set, val_set), config, FitRun(tmp_path / "resumed", template))
    monkeypatch.undo()
    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    fit(model, FitInputs(train_set, val_set), config, FitRun(tmp_path / "resumed", template))
    straight = load_checkpoint(tmp_path / "straight" / "last.safetensors").model.state_dict()
    resumed = load_checkpoint(tmp_path / "resumed" / "last.safetensors").model.state_dict()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_mixup_mixes_images_and_labels_by_one_weight():
    torch.manual_seed(3)
    images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 1])
    mixed, targets = mix_batch(images, labels, 3, Mixing(mixup_alpha=0.4))
    onehot = nn.functional.one_hot(labels, 3).float()
    weight = float(targets[0, 0])  # image 0 (class 0) mixed with image 3 (class 1)
    assert torch.allclose(mixed, images * weight + images.flip(0) * (1 - weight))
    assert torch.allclose(targets, onehot * weight + onehot.flip(0) * (1 - weight))
    assert torch.allclose(targets.sum(1), torch.ones(4))


def test_cutmix_weighs_the_labels_by_the_pasted_area():
    torch.manual_seed(5)
    images, labels = torch.zeros(2, 1, 10, 10), torch.tensor([0, 1])
    images[1] = 1.0
    mixed, targets = mix_batch(images, labels, 2, Mixing(cutmix_alpha=1.0))
    pasted_share = float(mixed[0].mean())  # ones pasted from image 1 into image 0
    assert 0 < pasted_share < 1
    assert targets[0].tolist() == pytest.approx([1 - pasted_share, pasted_share])
    unmixed, plain = mix_batch(images, labels, 2, Mixing(cutmix_alpha=1.0, prob=0.0))
    assert torch.equal(unmixed, images) and plain.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_in_function_matching_the_teacher_sees_exactly_the_students_images(
        tmp_path, tiny_data, tiny_model_spec):
    model, train_set, val_set, template = tiny_fit_setup(tiny_data, tiny_model_spec)
    torch.manual_seed(1)
    teacher = build_model(tiny_model_spec).eval()
    seen = {"student": [], "teacher": []}

    def recorder(name):
        def hook(module, inputs):
            if name == "teacher" or module.training:
                seen[name].append(inputs[0].detach().clone())
        return hook

    model.register_forward_pre_hook(recorder("student"))
    teacher.register_forward_pre_hook(recorder("teacher"))
    config = TrainConfig(epochs=1, lr=0.05, batch_size=8, num_workers=0, device="cpu",
                         distill_mode="function_matching", mixup_alpha=0.4)
    fit(model, FitInputs(train_set, val_set, teacher=teacher), config, FitRun(tmp_path, template))
    assert seen["student"] and len(seen["student"]) == len(seen["teacher"])
    for student_batch, teacher_batch in zip(seen["student"], seen["teacher"]):
        assert torch.equal(student_batch, teacher_batch)


def test_warmup_rises_to_the_peak_then_the_cosine_falls_to_zero():
    shares = [warmup_cosine(step, 4, 20) for step in range(20)]
    assert shares[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert shares[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(shares[4:], shares[5:]))
    assert shares[12] == pytest.approx(0.5 * (1 + math.cos(math.pi * 8 / 16)))
    assert warmup_cosine(20, 4, 20) == pytest.approx(0.0)


def test_fresh_weights_change_every_weight_and_keep_the_architecture(tiny_model_spec):
    torch.manual_seed(0)
    model = build_model(tiny_model_spec)
    before = copy.deepcopy(model.state_dict())
    fresh_weights(model, seed=7)
    after = model.state_dict()
    assert list(after) == list(before)
    for key, value in after.items():
        assert value.shape == before[key].shape, key
        if key.endswith(("weight", "bias")) and value.dtype.is_floating_point and \
                value.numel() > 1 and not torch.all(before[key] == before[key].flatten()[0]):
            assert not torch.equal(value, before[key]), key
    again = build_model(tiny_model_spec)
    fresh_weights(again, seed=7)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in after.items())


def test_finetune_takes_the_recovery_options_and_refuses_bad_values(tmp_path, tiny_data):
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    out = tmp_path / "ft"
    code, output = run_cli(["finetune", str(checkpoint), "--data", str(tiny_data), "--epochs",
                            "2", "--batch-size", "8", "--distill", "--distill-mode",
                            "function_matching", "--mixup", "0.2", "--cutmix", "1.0",
                            "--ema", "0.9", "--schedule", "cosine", "--warmup-epochs", "1",
                            "--out", str(out)])
    assert code == 0, output
    record = load_checkpoint(out / "finetuned.safetensors").info["finetune"]
    assert record["distill"]["mode"] == "function_matching"
    assert record["recovery"] == {"schedule": "cosine", "warmup_epochs": 1.0, "ema": 0.9,
                                  "mix": {"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "prob": 1.0},
                                  "reinit": False, "rewind": False, "lr": 0.01, "epochs": 2}
    assert_user_error(["finetune", str(checkpoint), "--data", str(tiny_data), "--ema", "1.5",
                       "--out", str(tmp_path / "bad")], "--ema")
    assert_user_error(["finetune", str(checkpoint), "--data", str(tiny_data), "--distill-mode",
                       "function_matching", "--out", str(tmp_path / "bad2")],
                      "--distill-mode", "--distill")


def test_rewind_takes_the_rate_and_length_of_the_checkpoints_own_training(tmp_path,
                                                                           tiny_data):
    from conftest import write_train_yamls

    model_yaml, data_yaml = write_train_yamls(tmp_path, tiny_data, EPOCHS=3, INIT_LR=0.07)
    code, output = run_cli(["train", "--model", model_yaml, "--data", data_yaml, "--out",
                            tmp_path / "trained"])
    assert code == 0, output
    trained = tmp_path / "trained" / "last.safetensors"
    code, output = run_cli(["finetune", str(trained), "--data", str(tiny_data), "--rewind",
                            "--batch-size", "8", "--out", str(tmp_path / "ft")])
    assert code == 0, output
    assert "rewound to the input's training: lr 0.07, 3 epochs" in output
    record = load_checkpoint(tmp_path / "ft" / "finetuned.safetensors").info["finetune"]
    assert (record["recovery"]["lr"], record["recovery"]["epochs"],
            record["recovery"]["schedule"], record["recovery"]["warmup_epochs"]) == \
        (0.07, 3, "cosine", 0.15)
    assert record["kept_epoch"] == 3
    # A pipeline stage's model carries the run input's training, so it rewinds to it too.
    recipe = write_tiny_recipe(tmp_path / "prune.yaml", trained, tiny_data,
                               [{"prune": {"ratio": 0.25}}])
    code, output = run_cli(["run", str(recipe), "--out", str(tmp_path / "run")])
    assert code == 0, output
    pruned = tmp_path / "run" / "stages" / "01-prune" / "model.safetensors"
    assert load_checkpoint(pruned).original_training == \
        {"lr": 0.07, "epochs": 3, "schedule": "onecycle"}
    code, output = run_cli(["finetune", str(pruned), "--data", str(tiny_data), "--rewind",
                            "--batch-size", "8", "--out", str(tmp_path / "ft_pruned")])
    assert code == 0, output
    assert "rewound to the input's training: lr 0.07, 3 epochs" in output
    assert_user_error(["finetune", str(trained), "--data", str(tiny_data), "--rewind", "--lr",
                       "0.1", "--out", str(tmp_path / "both")], "rewind", "lr")
    untrained = save_tiny_checkpoint(tmp_path / "untrained.safetensors")
    assert_user_error(["finetune", str(untrained), "--data", str(tiny_data), "--rewind",
                       "--out", str(tmp_path / "none")], "rewind needs", "recorded training")


def test_train_with_a_teacher_takes_the_same_recovery_options(tmp_path, tiny_data):
    from conftest import write_train_yamls

    teacher = save_tiny_checkpoint(tmp_path / "teacher.safetensors")
    model_yaml, data_yaml = write_train_yamls(tmp_path, tiny_data, EPOCHS=2)
    code, output = run_cli(["train", "--model", model_yaml, "--data", data_yaml, "--out",
                            tmp_path / "peer", "--teacher", teacher, "--distill-mode",
                            "function_matching", "--mixup", "0.2", "--ema", "0.9",
                            "--schedule", "cosine", "--warmup-epochs", "1"])
    assert code == 0, output
    record = load_checkpoint(tmp_path / "peer" / "last.safetensors").info["train"]
    assert (record["distill_mode"], record["mixup_alpha"], record["ema_decay"],
            record["schedule"], record["warmup_epochs"]) == \
        ("function_matching", 0.2, 0.9, "cosine", 1.0)
    assert_user_error(["train", "--model", model_yaml, "--data", data_yaml, "--out",
                       tmp_path / "alone", "--distill-mode", "function_matching"],
                      "--distill-mode", "--teacher")

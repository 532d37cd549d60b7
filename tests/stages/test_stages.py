"""Each stage on tiny models built in the test: shapes, reload, ONNX parity, what it promises."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import apply_stage, stage_context
from torch import nn

from compress.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from compress.data.config import DataConfig
from compress.data.training_data import TrainingData, train_val_datasets
from compress.measure.macs import count_macs, layer_macs
from compress.measure.parity import check_parity
from compress.models import build_model
from compress.ops.decomposition import svd_conv1x1, svd_linear, tucker2_conv
from compress.ops.onnx_export import export_onnx
from compress.stages.registry import create_stage, list_stages

TV_SMALL = {"kind": "torchvision", "name": "mobilenet_v3_small", "num_classes": 3,
            "kwargs": {"width_mult": 0.5}}
SIZE = 64


def _ctx(tmp_path: Path, spec: dict, data: TrainingData | None = None, teacher=None):
    return stage_context(SIZE, ["blue", "green", "red"], torch.device("cpu"), tmp_path, spec,
                        teacher=teacher, data=data)


def _tiny_data(tiny_data) -> TrainingData:
    train, val, classes = train_val_datasets(DataConfig(data_path=str(tiny_data), img_size=SIZE,
                                                        num_workers=0))
    return TrainingData(train, val, classes, batch_size=8, num_workers=0)


def _reload_and_export(tmp_path, model, spec):
    path = save_checkpoint(tmp_path / "m.safetensors",
                           Checkpoint(model, spec, ["blue", "green", "red"], SIZE))
    loaded = load_checkpoint(path).model
    x = torch.randn(3, 3, SIZE, SIZE)
    assert torch.allclose(model.eval()(x), loaded(x), atol=1e-6)
    onnx_path = export_onnx(loaded, tmp_path / "m.onnx", SIZE)
    assert check_parity(loaded, onnx_path, x)["relative_error"] < 1e-4
    return loaded


def test_every_stage_is_registered():
    assert {"prune", "decompose", "finetune", "export"} <= set(list_stages())


@pytest.mark.parametrize("spec_name", ["tiny", "torchvision"])
@pytest.mark.parametrize("importance", ["l1", "l2", "bn-scale"])
def test_prune_shrinks_macs_keeps_the_classifier_and_reloads(tmp_path, tiny_model_spec,
                                                              spec_name, importance):
    spec = tiny_model_spec if spec_name == "tiny" else TV_SMALL
    model = build_model(spec).eval()
    before = count_macs(model, SIZE)
    stage = create_stage("prune", {"importance": importance, "ratio": 0.5})
    ctx = _ctx(tmp_path, spec)
    pruned, result = apply_stage(stage, model, ctx)
    assert count_macs(pruned, SIZE) < 0.6 * before
    assert pruned(torch.randn(2, 3, SIZE, SIZE)).shape == (2, 3)
    assert result["widths"], "some conv must have lost channels"
    assert all(new % 8 == 0 or new == old for old, new in result["widths"].values())
    _reload_and_export(tmp_path, pruned, spec)


def test_prune_to_a_macs_target_and_ignored_layers(tmp_path, tiny_model_spec):
    model = build_model(tiny_model_spec).eval()
    stage = create_stage("prune", {"target_macs": 0.5, "ignore": ["model.0.*"]})
    pruned, result = apply_stage(stage, model, _ctx(tmp_path, tiny_model_spec))
    assert pruned.model[0].conv.out_channels == 16
    kept = count_macs(pruned, SIZE) / count_macs(build_model(tiny_model_spec), SIZE)
    assert kept <= 0.5


def test_prune_measures_the_batchnorm_statistics_of_the_cut_model(tmp_path, tiny_data):
    """With data, every BatchNorm's statistics after the cut are the plain mean over the
    stage's training images (the stale ones describe the uncut model); without, they stay."""
    model = build_model(TV_SMALL).eval()
    stage = create_stage("prune", {"ratio": 0.5, "calibration_images": 24})
    data = _tiny_data(tiny_data)
    inherited, without = apply_stage(stage, build_model(TV_SMALL).eval(), _ctx(tmp_path,
                                                                                TV_SMALL))
    assert without["batchnorm_images"] == 0
    pruned, result = apply_stage(stage, model, _ctx(tmp_path, TV_SMALL, data))
    assert result["batchnorm_images"] == 24
    norm_name = next(n for n, m in pruned.named_modules() if isinstance(m, nn.BatchNorm2d))
    norm = dict(pruned.named_modules())[norm_name]
    stale = dict(inherited.named_modules())[norm_name]
    assert not torch.allclose(norm.running_mean, stale.running_mean)
    # The first BatchNorm's input is the first conv's output: its mean over the 24 images.
    ctx_seed = _ctx(tmp_path, TV_SMALL).seed
    images = torch.stack([image for image, _ in data.calibration_images(24, SIZE, ctx_seed)])
    conv = next(m for m in pruned.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        first_outputs = conv(images)  # one batch: its mean is the statistic
    assert torch.allclose(norm.running_mean, first_outputs.mean((0, 2, 3)), atol=1e-4)


def test_prune_taylor_uses_real_gradients(tmp_path, tiny_model_spec, tiny_data):
    model = build_model(tiny_model_spec).eval()
    stage = create_stage("prune", {"importance": "taylor", "ratio": 0.3})
    assert stage.needs_data()
    pruned, result = apply_stage(stage, model, _ctx(tmp_path, tiny_model_spec, _tiny_data(tiny_data)))
    assert pruned(torch.randn(1, 3, SIZE, SIZE)).shape == (1, 3)


@pytest.mark.parametrize("ranks", [{"ranks": "ratio", "ratio": 0.25}, {"ranks": "vbmf"},
                                   {"ranks": "energy", "energy": 0.5}])
def test_decompose_never_increases_a_layers_macs(tmp_path, ranks):
    spec = {"kind": "torchvision", "name": "mobilenet_v3_small", "num_classes": 3}
    model = build_model(spec).eval()
    before_total = count_macs(model, SIZE)
    stage = create_stage("decompose", {**ranks, "min_layer_macs": 0, "min_macs_reduction": 0.0})
    ctx = _ctx(tmp_path, spec)
    decomposed, result = apply_stage(stage, model, ctx)
    assert result["decomposed"], "something must be decomposed at these ranks"
    for name, layer in result["decomposed"].items():
        assert layer["macs_after"] <= layer["macs_before"], name
        assert all(r % 8 == 0 or r in layer["shape"] for r in layer["ranks"]), layer
    measured = layer_macs(decomposed, SIZE)
    for name, layer in result["decomposed"].items():
        assert sum(v for k, v in measured.items() if k.startswith(name + ".")) == layer["macs_after"]
    assert count_macs(decomposed, SIZE) < before_total
    _reload_and_export(tmp_path, decomposed, spec)


def test_decompose_skips_depthwise_and_layers_that_would_cost_more(tmp_path, tiny_model_spec):
    model = build_model(tiny_model_spec).eval()
    stage = create_stage("decompose", {"ranks": "ratio", "ratio": 1.0, "min_layer_macs": 0})
    ctx = _ctx(tmp_path, tiny_model_spec)
    _, result = apply_stage(stage, model, ctx)
    assert result["decomposed"] == {}  # full ratio never pays
    assert not any(".conv.3" in name for name in result["skipped"])  # depthwise: not tried


def test_full_rank_factorisation_reproduces_the_model(tiny_model_spec):
    model = build_model(tiny_model_spec).eval()
    x = torch.randn(4, 3, SIZE, SIZE)
    expected = model(x)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Conv2d) and module.groups == 1:
            if module.kernel_size == (1, 1):
                rank = min(module.in_channels, module.out_channels)
                model.set_submodule(name, svd_conv1x1(module, rank)[0])
            else:
                model.set_submodule(name, tucker2_conv(module, module.out_channels,
                                                       module.in_channels)[0])
        elif isinstance(module, nn.Linear):
            model.set_submodule(name, svd_linear(module, min(module.weight.shape))[0])
    got = model(x)
    assert float((got - expected).detach().norm() / expected.detach().norm()) < 1e-4


def test_decompose_rank_map_is_checked_against_the_layer(tiny_model_spec):
    model = build_model(tiny_model_spec)
    with pytest.raises(ValueError, match="larger than the layer"):
        create_stage("decompose", {"ranks": "map", "rank_map": {"model.4.conv": 512}}).check(model)
    with pytest.raises(ValueError, match="not a decomposable"):
        create_stage("decompose", {"ranks": "map", "rank_map": {"model.9": 8}}).check(model)


def _decomposed_tiny(tiny_model_spec):
    model = build_model(tiny_model_spec)
    model.model[4].conv = svd_conv1x1(model.model[4].conv, 8)[0]
    return model


@pytest.mark.parametrize("policy", ["none", "decomposed", "convs", "all-but-classifier", "bn",
                                    ["model.0.*", "*.bn.*"]])
def test_freeze_policies_train_exactly_what_they_say(tmp_path, tiny_model_spec, tiny_data, policy):
    model = _decomposed_tiny(tiny_model_spec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stage = create_stage("finetune", {"epochs": 1, "lr": 0.05, "freeze": policy})
    tuned, result = apply_stage(stage, model, _ctx(tmp_path, tiny_model_spec, _tiny_data(tiny_data)))
    after = tuned.state_dict()
    params = dict(model.named_parameters())
    should_train = {
        "none": lambda n: True,
        "bn": lambda n: True,
        "decomposed": lambda n: n.startswith("model.4.conv."),
        "convs": lambda n: n.endswith("weight") and isinstance(
            model.get_submodule(n.rsplit(".", 1)[0]), nn.Conv2d),
        "all-but-classifier": lambda n: n.startswith("model.7.linear."),
    }.get(policy if isinstance(policy, str) else "", lambda n: not (
        n.startswith("model.0.") or ".bn." in n))
    for name in params:
        changed = not torch.equal(before[name], after[name])
        assert changed == should_train(name), (policy, name)
    if policy == "bn":
        running = [k for k in before if k.endswith("running_mean")]
        assert all(torch.equal(before[k], after[k]) for k in running)
    elif policy == "none":
        assert any(not torch.equal(before[k], after[k]) for k in before if "running_mean" in k)


def test_finetune_with_distillation_runs(tmp_path, tiny_model_spec, tiny_data):
    teacher = build_model(tiny_model_spec).eval()
    student = build_model(tiny_model_spec)
    stage = create_stage("finetune", {"epochs": 1, "distill": {"temperature": 2.0, "alpha": 0.7}})
    ctx = _ctx(tmp_path, tiny_model_spec, _tiny_data(tiny_data), teacher=teacher)
    _, result = apply_stage(stage, student, ctx)
    assert result["distill"] == {"temperature": 2.0, "alpha": 0.7, "mode": "soft_hard",
                                 "teacher": "teacher"}


def test_finetune_distils_from_the_run_input_on_request(tmp_path, tiny_model_spec, tiny_data,
                                                       monkeypatch):
    """distill.teacher: input: the model before the run's cuts, not the recipe's teacher
    (which a plan times against)."""
    import compress.stages.finetune as finetune

    recipe_teacher, run_input = build_model(tiny_model_spec).eval(), build_model(tiny_model_spec)
    taught_by = []
    real_fit = finetune.fit
    monkeypatch.setattr(finetune, "fit", lambda model, inputs, *rest: (
        taught_by.append(inputs.teacher), real_fit(model, inputs, *rest))[1])
    for choice in ("input", "teacher"):
        stage = create_stage("finetune", {"epochs": 1, "distill": {"teacher": choice}})
        ctx = stage_context(SIZE, ["blue", "green", "red"], torch.device("cpu"),
                            tmp_path / choice, tiny_model_spec, teacher=recipe_teacher,
                            run_input=run_input, data=_tiny_data(tiny_data))
        _, result = apply_stage(stage, build_model(tiny_model_spec), ctx)
        assert result["distill"]["teacher"] == choice
    assert taught_by[0] is run_input and taught_by[1] is recipe_teacher
    with pytest.raises(ValueError, match="teacher"):
        create_stage("finetune", {"distill": {"teacher": "baseline"}})


def test_finetune_clips_the_gradient_norm(tmp_path, tiny_model_spec, tiny_data):
    moved = {}
    for clip in (None, 1e-9):
        torch.manual_seed(0)
        model = build_model(tiny_model_spec)
        before = {k: v.clone() for k, v in model.named_parameters()}
        ctx = _ctx(tmp_path / str(clip), tiny_model_spec, _tiny_data(tiny_data))
        tuned, _ = apply_stage(create_stage("finetune", {"epochs": 1, "lr": 0.05,
                                                         "grad_clip": clip}), model, ctx)
        moved[clip] = max((v - before[k]).abs().max().item()
                          for k, v in tuned.named_parameters())
    # Each step moves a weight by at most lr x the clipped norm (x 10 for the momentum).
    assert moved[None] > 1e-3 and moved[1e-9] < 0.05 * 1e-9 * 10 * 5  # 5 steps


@pytest.mark.parametrize("fp16", [False, True])
def test_export_checks_parity_on_real_images(tmp_path, tiny_model_spec, tiny_data, fp16):
    model = build_model(tiny_model_spec).eval()
    ctx = _ctx(tmp_path, tiny_model_spec, _tiny_data(tiny_data))
    _, result = apply_stage(create_stage("export", {"fp16": fp16}), model, ctx)
    checks = result["checks"]
    assert checks["check_inputs"] == "val images" and checks["fp32"]["relative_error"] < 1e-4
    assert (tmp_path / "model.onnx").is_file()
    if fp16:
        import onnx

        graph = onnx.load(str(tmp_path / "model.onnx")).graph
        assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert checks["fp16"]["top1_agreement"] >= 0.99
        assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer)


def test_finetune_with_nothing_left_to_train_keeps_the_model(tmp_path, tiny_model_spec, tiny_data):
    model = build_model(tiny_model_spec)  # nothing decomposed
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = _ctx(tmp_path, tiny_model_spec, _tiny_data(tiny_data))
    tuned, result = apply_stage(create_stage("finetune", {"epochs": 1, "freeze": "decomposed"}), model, ctx)
    assert result["skipped"] == "no parameter left to train"
    assert all(torch.equal(before[k], v) for k, v in tuned.state_dict().items())

"""The quantize stage: the keep logic on injected figures, and real INT8 files of a small
trained model checked against float32."""

from __future__ import annotations

import filecmp

import numpy as np
import onnx
import pytest
import torch
from conftest import TINY_CLASSES, TINY_MNV3, stage_context

from compress.data.config import DataConfig
from compress.data.training_data import TrainingData, train_val_datasets
from compress.device import int8_saturation_remedy
from compress.errors import StageFailed
from compress.measure.latency import Comparison, Latency
from compress.measure.runners import OrtRunner
from compress.models import build_model
from compress.ops.onnx_export import export_onnx
from compress.stages.quantize import choose_model, per_image_quantile_ranges
from compress.stages.registry import create_stage

SIZE = 32


@pytest.mark.parametrize("agreement, speedup, keep, expected, reason", [
    (0.99, 1.30, "fastest", "int8", "INT8 kept: 1.30x the float32 speed at batch 1"),
    # correct but slower: the float32 file is kept
    (0.99, 0.85, "fastest", "float32", "INT8 not faster here (0.85x the float32 speed at "
                                       "batch 1, needed > 1.05x); float32 kept"),
    # a tie is no reason to change the arithmetic
    (0.99, 1.00, "fastest", "float32", "INT8 not faster here (1.00x"),
    # fast but wrong
    (0.90, 2.00, "fastest", "float32", "INT8 rejected: top-1 agreement 90.0% < 98%; "
                                       "float32 kept"),
    (0.99, 0.85, "int8", "int8", "INT8 kept (keep: int8); 0.85x the float32 speed"),
    (0.99, 1.04, "fastest", "float32", "INT8 not faster here (1.04x"),  # within the margin
    (0.99, 1.06, "fastest", "int8", "INT8 kept: 1.06x"),
])
def test_keep_logic(agreement, speedup, keep, expected, reason):
    choice, said = choose_model(agreement, 0.98, speedup, keep, min_speedup=1.05)
    assert choice == expected
    assert said.startswith(reason), said


def test_keep_int8_fails_when_int8_is_not_correct():
    with pytest.raises(StageFailed, match="agreement"):
        choose_model(0.5, 0.98, 3.0, "int8")


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    """The tiny MobileNetV3 fine-tuned on the colour folders, so that its predictions mean
    something (an untrained net's near-uniform logits flip under any rounding)."""
    torch.manual_seed(0)
    spec = {"kind": "kindle", "config": TINY_MNV3}
    train, val, classes = train_val_datasets(DataConfig(data_path=str(tiny_data),
                                                        img_size=SIZE, num_workers=0))
    data = TrainingData(train, val, classes, batch_size=8, num_workers=0)
    model = build_model(spec)
    ctx = stage_context(SIZE, TINY_CLASSES, torch.device("cpu"),
                       tmp_path_factory.mktemp("ft"), spec, data=data)
    model = create_stage("finetune", {"epochs": 4, "lr": 0.05}).apply(model, ctx).model
    return model.eval(), spec, data


def _quantize(tmp_path, trained, **options):
    model, spec, data = trained
    ctx = stage_context(SIZE, TINY_CLASSES, torch.device("cpu"), tmp_path, spec, data=data)
    return create_stage("quantize", {"timing_runs": 20, **options}).apply(model, ctx).result.to_dict()


def _op_types(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_static_qdq_is_checked_against_float32_and_kept_when_asked(tmp_path, trained):
    details = _quantize(tmp_path, trained, keep="int8", calibration_images=16)
    int8 = tmp_path / "model_int8.onnx"
    assert {"QuantizeLinear", "DequantizeLinear"} <= _op_types(int8)
    assert details["kept"] == "int8" and filecmp.cmp(int8, tmp_path / "model.onnx")
    # The agreement it reports is the one a user would measure.
    _, _, data = trained
    images = torch.stack([data.val[i][0] for i in range(len(data.val))]).numpy()
    runners = {name: OrtRunner.open(tmp_path / f"model_{name}.onnx") for name in ("fp32", "int8")}
    top1 = {name: runner(runner.prepare(images)).argmax(1) for name, runner in runners.items()}
    assert details["top1_agreement"] == pytest.approx(np.mean(top1["fp32"] == top1["int8"]))
    assert details["top1_agreement"] >= 0.98
    assert set(details["macro_f1"]) == {"float32", "int8", "change"}
    # The per-cycle speed-up, inside its recorded spread, which the note states too.
    low, high = details["int8_speedup_spread"]
    assert low <= details["int8_speedup_vs_float32_b1"] <= high
    assert f"p10-p90 over cycles {low:.2f}-{high:.2f}x" in details["note"]


def test_keep_fastest_keeps_float32_where_int8_timed_slower(tmp_path, trained):
    """The stage asks the measurer which file is faster (here a stand-in that says INT8
    runs at half the speed) and deploys the float32 file, however correct INT8 is."""
    model, spec, data = trained
    ctx = stage_context(SIZE, TINY_CLASSES, torch.device("cpu"), tmp_path, spec, data=data)
    asked = []

    def half_speed(path_a, path_b, runs=None, batch=1):
        asked.append((path_a.name, path_b.name, runs))
        return Comparison(Latency(1, 1.0, 1.0, runs, "stand-in"),
                          Latency(1, 2.0, 2.0, runs, "stand-in"), 0.5)

    ctx.measurer.compare_files = half_speed
    details = create_stage("quantize", {"calibration_images": 16, "min_agreement": 0.0,
                                        "timing_runs": 12}).apply(model, ctx).result.to_dict()
    assert asked == [("model_fp32.onnx", "model_int8.onnx", 12)]
    assert details["kept"] == "float32" and details["int8_speedup_vs_float32_b1"] == 0.5
    assert filecmp.cmp(tmp_path / "model_fp32.onnx", tmp_path / "model.onnx")
    assert not filecmp.cmp(tmp_path / "model_int8.onnx", tmp_path / "model.onnx")
    assert "INT8 not faster here (0.50x" in details["note"]


def test_per_image_quantile_ranges(tmp_path, trained):
    model, _, data = trained
    path = export_onnx(model, tmp_path / "m.onnx", SIZE)
    images = torch.stack([data.train[i][0] for i in range(10)])
    widest = per_image_quantile_ranges(path, images, 1.0, tmp_path)
    narrower = per_image_quantile_ranges(path, images, 0.6, tmp_path)
    runner = OrtRunner.open(path)
    logits = np.stack([runner(runner.prepare(image[None].numpy()))[0] for image in images])
    output = runner.session.get_outputs()[0].name
    assert widest[output][0]["rmax"] == pytest.approx(max(logits.max(), 0), rel=1e-5)
    assert widest[output][0]["rmin"] == pytest.approx(min(logits.min(), 0), rel=1e-5)
    assert set(widest) == set(narrower) and len(widest) > 20
    for name in widest:
        low, high = widest[name][0], narrower[name][0]
        assert low["rmin"] <= high["rmin"] <= 0 <= high["rmax"] <= low["rmax"]


def test_dynamic_mode_needs_no_calibration_data():
    assert not create_stage("quantize", {"mode": "dynamic"}).needs_data()
    assert create_stage("quantize", {}).needs_data()


def test_dynamic_mode_quantizes_weights(tmp_path, trained):
    details = _quantize(tmp_path, trained, mode="dynamic", keep="int8", min_agreement=0.0)
    assert _op_types(tmp_path / "model_int8.onnx") & {"ConvInteger", "MatMulInteger",
                                                       "DynamicQuantizeLinear"}
    # The agreement it reports is the one a user would measure on the same images.
    _, _, data = trained
    images = torch.stack([data.val[i][0] for i in range(len(data.val))]).numpy()
    runners = {name: OrtRunner.open(tmp_path / f"model_{name}.onnx") for name in ("fp32", "int8")}
    top1 = {name: runner(runner.prepare(images)).argmax(1) for name, runner in runners.items()}
    assert details["top1_agreement"] == pytest.approx(np.mean(top1["fp32"] == top1["int8"]))


@pytest.mark.parametrize("flags, machine, remedy", [
    ({"avx2", "fma"}, "x86_64", "reduce_range"),  # VPMADDUBSW: U8S8 can saturate
    ({"avx2", "avx512f", "avx512bw"}, "x86_64", "reduce_range"),  # AVX-512 without VNNI
    ({"avx2", "avx512_vnni"}, "x86_64", "none"),
    ({"avx2", "avx_vnni"}, "x86_64", "none"),
    (set(), "aarch64", "none"),
])
def test_the_saturation_remedy_follows_the_cpus_int8_instructions(flags, machine, remedy):
    assert int8_saturation_remedy(flags, machine) == remedy


@pytest.mark.parametrize("remedy", ["reduce_range", "u8u8"])
def test_each_saturation_remedy_gives_a_correct_int8_model_and_is_recorded(tmp_path, trained,
                                                                           remedy):
    details = _quantize(tmp_path, trained, keep="int8", calibration_images=16,
                        saturation=remedy)
    assert details["saturation_remedy"] == remedy
    assert details["top1_agreement"] >= 0.98
    weights = [init for init in onnx.load(str(tmp_path / "model_int8.onnx")).graph.initializer
               if init.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
               and len(init.dims) == 4]
    assert weights
    if remedy == "u8u8":
        assert all(w.data_type == onnx.TensorProto.UINT8 for w in weights)
    else:  # 7-bit weights: within [-64, 64] where 8 bits reach +-127
        values = np.concatenate([onnx.numpy_helper.to_array(w).ravel() for w in weights])
        assert np.abs(values.astype(int)).max() <= 64

"""ONNX export: the file runs in ONNX Runtime with the torch model's outputs at any batch
(compress.measure.parity checks it the way the stages do),
carries its class names and input size, is written atomically; FP16 keeps float32 input
and output."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from conftest import TINY_CLASSES, TINY_MNV3

from compress.measure.parity import check_parity
from compress.measure.runners import OrtRunner
from compress.models import build_model
from compress.ops.onnx_export import convert_fp16, export_onnx, read_metadata


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model({"kind": "kindle", "config": TINY_MNV3}).eval()
    folder = tmp_path_factory.mktemp("export")
    return model, export_onnx(model, folder / "tiny.onnx", 32, classes=TINY_CLASSES)


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_runtime_gives_the_torch_models_logits_at_any_batch(exported, batch):
    model, path = exported
    images = torch.randn(batch, 3, 32, 32)
    with torch.no_grad():
        expected = model(images).numpy()
    runner = OrtRunner.open(path)
    got = runner(runner.prepare(images.numpy()))
    assert got.shape == (batch, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    parity = check_parity(model, path, images)
    assert parity["relative_error"] < 1e-5 and parity["top1_agreement"] == 1.0
    assert parity["images"] == batch


def test_the_file_names_its_classes_and_input_size_and_leaves_no_temporary(exported):
    _, path = exported
    assert read_metadata(OrtRunner.open(path).session) == (TINY_CLASSES, 32)
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.onnx"]


def test_parity_detects_a_file_of_other_weights(exported, tmp_path):
    model, _ = exported
    torch.manual_seed(1)
    other = build_model({"kind": "kindle", "config": TINY_MNV3}).eval()
    path = export_onnx(other, tmp_path / "other.onnx", 32)
    assert check_parity(model, path, torch.randn(4, 3, 32, 32))["relative_error"] > 0.1


def test_fp16_keeps_float32_io_and_agrees_with_float32(exported, tmp_path):
    model, path = exported
    fp16 = convert_fp16(path, tmp_path / "tiny_fp16.onnx")
    session = OrtRunner.open(fp16).session
    assert session.get_inputs()[0].type == "tensor(float)"
    assert session.get_outputs()[0].type == "tensor(float)"
    graph = onnx.load(str(fp16)).graph
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer)
    images = torch.randn(4, 3, 32, 32)
    parity = check_parity(model, fp16, images)
    assert 0 < parity["relative_error"] < 1e-2  # rounded to half precision, not broken

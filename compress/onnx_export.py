"""Export to ONNX (dynamic batch) and FP16 conversion that keeps float32 inputs/outputs."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

INPUT_NAME, OUTPUT_NAME = "input", "logits"
DEFAULT_OPSET = 17


def export_onnx(model: nn.Module, path: str | Path, input_size: int,
                opset: int = DEFAULT_OPSET) -> Path:
    """Write `model` as ONNX with a dynamic batch axis, atomically.

    Uses torch's TorchScript-based exporter: about 1 s for MobileNetV3 where the dynamo
    exporter takes about 15 s and needs an opset conversion for 17.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    model = model.eval().cpu()
    example = torch.zeros(1, 3, input_size, input_size)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(tmp), input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], opset_version=opset,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          dynamo=False)
    os.replace(tmp, path)
    return path


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    """FP16 weights and compute, float32 input and output (callers feed float32 as before)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, dst)
    return dst


def ort_session(path: str | Path, device: str = "cpu", threads: int | None = None):
    """An ONNX Runtime session on the run's device (CUDA provider when asked and present)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), options, providers=providers)


def ort_logits(session, images: np.ndarray) -> np.ndarray:
    return session.run(None, {session.get_inputs()[0].name: images.astype(np.float32)})[0]


def check_parity(model: nn.Module, onnx_path: str | Path, images: torch.Tensor
                 ) -> dict[str, float]:
    """Compare ONNX Runtime's logits with torch's on the same images."""
    with torch.no_grad():
        expected = model.eval().cpu()(images).numpy()
    got = ort_logits(ort_session(onnx_path), images.numpy())
    relative_error = float(np.linalg.norm(got - expected) / max(np.linalg.norm(expected), 1e-12))
    agreement = float(np.mean(got.argmax(1) == expected.argmax(1)))
    return {"relative_error": relative_error, "top1_agreement": agreement,
            "images": int(len(images))}

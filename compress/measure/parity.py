"""Does an ONNX file compute what its torch model computes? Logits of both on the same
images: the relative error (float32 files) and the top-1 agreement (FP16, INT8 and the
forms a model is timed in), with the bars every check in `compress` holds them to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compress.measure.runners import OrtRunner

# A float32 export computes the same function: only summation order may differ.
FP32_MAX_RELATIVE_ERROR = 1e-4
# An FP16 file, or a timed form in FP16 (CUDA graphs), must give the float32 class on
# nearly every image: its latency is otherwise that of a model that predicts otherwise.
FP16_MIN_TOP1_AGREEMENT = 0.99


def check_parity(model: nn.Module, onnx_path: str | Path, images: torch.Tensor,
                 runner: Any = None) -> dict[str, float]:
    """Compare the logits of the ONNX file in ONNX Runtime on the CPU (or in `runner`, the
    file opened in another runtime) with torch's on the same images."""
    with torch.no_grad():
        expected = model.eval().cpu()(images).numpy()
    runner = runner or OrtRunner.open(onnx_path)
    got = np.asarray(runner(runner.prepare(images.numpy())), dtype=np.float32)
    relative_error = float(np.linalg.norm(got - expected) / max(np.linalg.norm(expected), 1e-12))
    agreement = float(np.mean(got.argmax(1) == expected.argmax(1)))
    return {"relative_error": relative_error, "top1_agreement": agreement,
            "images": int(len(images))}

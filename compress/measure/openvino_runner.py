"""What gets timed in OpenVINO: an exported ONNX file compiled for OpenVINO's CPU plugin,
run synchronously through one infer request (the interface of runners.OrtRunner).

Float32 stays float32: on CPUs with AMX or AVX-512 BF16 OpenVINO's CPU plugin runs float32
models in bfloat16 by default, which moves logits by about 1e-2 and would make "faster"
mean "less precise" next to ONNX Runtime. INFERENCE_PRECISION_HINT f32 keeps the
arithmetic the model was exported with; the LATENCY hint is what batch-1 deployments use.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compress.errors import UserError, first_line

OPENVINO_HINT = "pip install -e '.[openvino]'"
PROVIDER_NAME = "OpenVINO CPU"


def openvino_problem(load: bool = True) -> str | None:
    """None where OpenVINO imports, else why not and how to install it. Without `load`
    only whether it is installed: nothing is imported, so OpenVINO stays out of the
    caller's process (compress.measure.timing_process runs it)."""
    if not load:
        return None if importlib.util.find_spec("openvino") else \
            f"OpenVINO is not installed ({OPENVINO_HINT})"
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        return f"OpenVINO is not installed ({OPENVINO_HINT}): {exc}"
    return None


def compile_onnx(path: str | Path, threads: int | None = None) -> Any:
    """The ONNX file read and compiled for OpenVINO's CPU plugin, float32 kept float32."""
    problem = openvino_problem()
    if problem:
        raise UserError(problem)
    import openvino as ov

    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    core = ov.Core()
    try:
        return core.compile_model(core.read_model(str(path)), "CPU", config)
    except RuntimeError as exc:  # OpenVINO's own error for a file or op it cannot take
        raise UserError(f"{path}: OpenVINO cannot compile it: {first_line(exc)}"
                        ) from None


@dataclass
class OvRunner:
    compiled: Any
    note: str | None = None

    @classmethod
    def open(cls, path: str | Path, threads: int | None = None) -> "OvRunner":
        return cls(compile_onnx(path, threads))

    def __post_init__(self) -> None:
        self._request = self.compiled.create_infer_request()

    provider = PROVIDER_NAME
    provider_key = "cpu"  # the device whose peak GFLOP/s bounds it

    def _shape(self) -> list:
        shape = self.compiled.inputs[0].get_partial_shape()
        return [dim.get_length() if dim.is_static else None for dim in shape]

    def input_size(self) -> int | None:
        height, width = self._shape()[2:4]
        return height if height is not None and height == width else None

    def fixed_batch(self) -> int | None:
        return self._shape()[0]

    def prepare(self, images: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(images, dtype=np.float32)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self._request.infer({0: images})
        return self._request.get_output_tensor(0).data.copy()

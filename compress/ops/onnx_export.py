"""Export to ONNX (dynamic batch) and FP16 conversion that keeps float32 inputs/outputs."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from compress.fileio import atomic_path

INPUT_NAME, OUTPUT_NAME = "input", "logits"


CLASSES_KEY, INPUT_SIZE_KEY = "compress.classes", "compress.input_size"


DEFAULT_OPSET = 17


def export_onnx(model: nn.Module, path: str | Path, input_size: int,
                opset: int = DEFAULT_OPSET, classes: list[str] | None = None) -> Path:
    """Write `model` as ONNX with a dynamic batch axis, atomically; `classes` (label order)
    and the input size go into the file's metadata so that `compress predict` needs nothing
    else.

    Uses torch's TorchScript-based exporter: about 1 s for MobileNetV3 where the dynamo
    exporter takes about 15 s and needs an opset conversion for 17.
    """
    path = Path(path)
    model = model.eval().cpu()
    example = torch.zeros(1, 3, input_size, input_size)
    with atomic_path(path) as tmp:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(tmp), input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], opset_version=opset,
                              dynamic_axes={INPUT_NAME: {0: "batch"},
                                            OUTPUT_NAME: {0: "batch"}},
                              dynamo=False)
        if classes is not None:
            import onnx

            onnx_model = onnx.load(str(tmp))
            set_metadata(onnx_model, classes, input_size)
            onnx.save(onnx_model, str(tmp))
    return path


def set_metadata(onnx_model, classes: list[str], input_size: int) -> None:
    """Store class names and input size in an onnx.ModelProto's metadata_props."""
    entries = {CLASSES_KEY: json.dumps(list(classes)), INPUT_SIZE_KEY: str(input_size)}
    kept = [p for p in onnx_model.metadata_props if p.key not in entries]
    del onnx_model.metadata_props[:]
    onnx_model.metadata_props.extend(kept)
    for key, value in entries.items():
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata(session) -> tuple[list[str] | None, int | None]:
    """Class names and input size stored by export_onnx, from an ONNX Runtime session."""
    custom = session.get_modelmeta().custom_metadata_map
    classes = json.loads(custom[CLASSES_KEY]) if CLASSES_KEY in custom else None
    input_size = int(custom[INPUT_SIZE_KEY]) if INPUT_SIZE_KEY in custom else None
    return classes, input_size


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    """FP16 weights and compute, float32 input and output (callers feed float32 as before)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    return dst

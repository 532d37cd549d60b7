"""A readable summary of a checkpoint: layers, parameters, MACs, classes, provenance."""

from __future__ import annotations

from typing import Any

from torch import nn

from compress.checkpoint import Checkpoint, load_checkpoint
from compress.measure.macs import count_params, layer_macs


def _layer_shape(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        k = "x".join(map(str, module.kernel_size))
        groups = f" g{module.groups}" if module.groups > 1 else ""
        return f"{module.in_channels}->{module.out_channels} k{k} s{module.stride[0]}{groups}"
    if isinstance(module, nn.Linear):
        return f"{module.in_features}->{module.out_features}"
    return ""


def checkpoint_summary(checkpoint: Checkpoint) -> dict[str, Any]:
    macs = layer_macs(checkpoint.model, checkpoint.input_size)
    layers = []
    for name, module in checkpoint.model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            layers.append({"name": name, "type": type(module).__name__,
                           "shape": _layer_shape(module), "params": count_params(module),
                           "macs": macs.get(name, 0)})
    return {"model": checkpoint.model_spec.get("name", checkpoint.model_spec["kind"]),
            "classes": checkpoint.classes, "input_size": checkpoint.input_size,
            "params": count_params(checkpoint.model), "macs": sum(macs.values()),
            "layers": layers, "info": checkpoint.info}


def onnx_summary(path: str, input_size: int | None = None) -> dict[str, Any]:
    """The same summary for an ONNX file: its Conv / Gemm / MatMul nodes by the same MACs
    convention, parameters as deployed (BatchNorm folded into the convs by the export)."""
    from compress.measure.onnx_macs import onnx_layer_macs, onnx_params
    from compress.measure.runtime import RunnerOptions
    from compress.ops.onnx_export import read_metadata
    from compress.tools.bench import open_model

    opened = open_model(path, RunnerOptions(threads=1), input_size)
    macs = onnx_layer_macs(path, opened.input_size)
    classes = read_metadata(opened.runner.session)[0] or []
    layers = [{"name": name, "type": "", "shape": "", "params": 0, "macs": value}
              for name, value in macs.items()]
    return {"model": f"ONNX file {path}", "classes": classes, "input_size": opened.input_size,
            "params": onnx_params(path), "macs": sum(macs.values()), "layers": layers,
            "info": {}}


def summarize(path: str, input_size: int | None = None) -> dict[str, Any]:
    """The summary of a compress checkpoint or an .onnx file (`input_size`: where the file
    has no fixed one, the size to count MACs at)."""
    if str(path).endswith(".onnx"):
        return onnx_summary(path, input_size)
    return checkpoint_summary(load_checkpoint(path))


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"{'layer':<28}{'type':<8}{'shape':<26}{'params':>10}{'MACs':>13}"]
    for layer in summary["layers"]:
        lines.append(f"{layer['name']:<28}{layer['type']:<8}{layer['shape']:<26}"
                     f"{layer['params']:>10,}{layer['macs']:>13,}")
    train = summary["info"].get("train", {})
    lines += [
        "",
        f"model       {summary['model']}",
        f"input       3x{summary['input_size']}x{summary['input_size']}",
        f"params      {summary['params']:,}",
        f"MACs        {summary['macs']:,} (conv + linear, one image)",
        f"classes     {len(summary['classes'])}: {', '.join(summary['classes']) or 'not stored'}",
    ]
    if train:
        epoch = train.get("epoch", train.get("best_epoch"))  # older checkpoints: best_epoch
        lines.append(f"trained     epoch {epoch} of {train.get('epochs')}, "
                     f"val macro F1 {train.get('val_macro_f1', float('nan')):.4f}")
    return "\n".join(lines)

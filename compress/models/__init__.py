"""Model builders. Every model in `compress` is built through `build_model(spec)`.

A spec is plain data (JSON-able), so a checkpoint can store it instead of a pickle:
  {"kind": "kindle", "config": {...the model YAML...}}
  {"kind": "torchvision", "name": "mobilenet_v3_small", "num_classes": 6, "kwargs": {...}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from compress.errors import UserError
from compress.models.kindle import build_kindle_model, kindle_num_classes, load_kindle_yaml
from compress.models.torchvision_models import build_torchvision_model, torchvision_classifier_names

ModelSpec = dict[str, Any]


def build_model(spec: ModelSpec) -> nn.Module:
    kind = spec.get("kind")
    if kind == "kindle":
        return build_kindle_model(spec["config"])
    if kind == "torchvision":
        return build_torchvision_model(spec["name"], spec["num_classes"], **spec.get("kwargs", {}))
    raise UserError(f"unknown model kind {kind!r} (expected 'kindle' or 'torchvision')")


def model_spec_from_arg(model: str, num_classes: int | None = None,
                        width_mult: float | None = None) -> ModelSpec:
    """Turn a CLI `--model` value into a spec: a YAML file, or a torchvision name.

    For YAML models the class count is the last Linear's width and must agree with the data.
    """
    if model.endswith((".yaml", ".yml")) or Path(model).is_file():
        config = load_kindle_yaml(model)
        yaml_classes = kindle_num_classes(config)
        if num_classes is not None and yaml_classes is not None and yaml_classes != num_classes:
            raise UserError(f"model config {model}: its last Linear has {yaml_classes} outputs "
                            f"but the data has {num_classes} classes")
        if width_mult is not None:
            config = {**config, "width_multiple": width_mult}
        return {"kind": "kindle", "config": config}
    if model in torchvision_classifier_names():
        if num_classes is None:
            raise UserError(f"model {model}: the number of classes is unknown (give --classes "
                            "or --data)")
        kwargs = {} if width_mult is None else {"width_mult": width_mult}
        return {"kind": "torchvision", "name": model, "num_classes": num_classes,
                "kwargs": kwargs}
    raise UserError(f"model {model!r}: not a model YAML file nor a torchvision classifier name")

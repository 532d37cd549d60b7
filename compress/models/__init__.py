"""Model builders. Every model in `compress` is built through `build_model(spec)`.

A spec is plain data (JSON-able), so a checkpoint can store it instead of a pickle:
  {"kind": "kindle", "config": {...the model YAML...}}
  {"kind": "torchvision", "name": "mobilenet_v3_small", "num_classes": 6, "kwargs": {...}}
  {"kind": "timm", "name": "efficientnet_lite0", "num_classes": 6, "kwargs": {...}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from compress.errors import UserError
from compress.models.kindle import build_kindle_model, kindle_num_classes, load_kindle_yaml
from compress.models.timm_models import PREFIX as TIMM_PREFIX
from compress.models.timm_models import build_timm_model, is_timm_classifier
from compress.models.torchvision_models import (
    build_torchvision_model,
    torchvision_classifier_names,
    width_kwargs,
)

ModelSpec = dict[str, Any]


def build_model(spec: ModelSpec) -> nn.Module:
    kind = spec.get("kind")
    if kind == "kindle":
        return build_kindle_model(spec["config"])
    if kind == "torchvision":
        return build_torchvision_model(spec["name"], spec["num_classes"], **spec.get("kwargs", {}))
    if kind == "timm":
        return build_timm_model(spec["name"], spec["num_classes"], **spec.get("kwargs", {}))
    raise UserError(f"unknown model kind {kind!r} (expected 'kindle', 'torchvision' or 'timm')")


def classifier_layer(model: nn.Module) -> nn.Module:
    """The last Conv2d or Linear: its output is the model's output, its width is fixed."""
    last = None
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            last = module
    if last is None:
        raise ValueError("model has no Conv2d or Linear layer")
    return last


def model_spec_from_arg(model: str, num_classes: int | None = None,
                        width_mult: float | None = None) -> ModelSpec:
    """Turn a CLI `--model` value into a spec: a YAML file, a torchvision name, or a timm
    name (`timm/NAME`, or a bare NAME that torchvision does not have).

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
    if num_classes is None and (model in torchvision_classifier_names()
                                or model.startswith(TIMM_PREFIX) or is_timm_classifier(model)):
        raise UserError(f"model {model}: the number of classes is unknown (give --classes "
                        "or --data)")
    if model in torchvision_classifier_names():
        return {"kind": "torchvision", "name": model, "num_classes": num_classes,
                "kwargs": width_kwargs(model, width_mult)}
    name = model.removeprefix(TIMM_PREFIX)
    if model.startswith(TIMM_PREFIX) or is_timm_classifier(name):
        if width_mult is not None:
            raise UserError(f"model {model}: timm builds it at a fixed width, so --width-mult "
                            "cannot apply (pick a variant such as mobilenetv3_large_075)")
        return {"kind": "timm", "name": name, "num_classes": num_classes, "kwargs": {}}
    raise UserError(f"model {model!r}: not a model YAML file, a torchvision classifier name "
                    "nor a timm model name (timm/NAME; needs the timm extra)")

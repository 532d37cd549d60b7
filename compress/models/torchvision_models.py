"""torchvision classifiers by name, built without pretrained weights."""

from __future__ import annotations

from typing import Any

from torch import nn

from compress.errors import UserError

# The families whose builder takes a free width multiplier, and its argument. Others fix
# their width by name (resnet18 / wide_resnet50_2, shufflenet_v2_x0_5, regnet_y_400mf, ...);
# ConvNeXt's builder would even swallow an unknown keyword silently.
WIDTH_ARGUMENTS = {"mobilenet_v2": "width_mult", "mobilenet_v3_small": "width_mult",
                   "mobilenet_v3_large": "width_mult"}


def torchvision_classifier_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def width_kwargs(name: str, width: float | None) -> dict[str, Any]:
    """The builder argument for a width multiplier; a one-line error for a fixed-width family."""
    if width is None:
        return {}
    if name not in WIDTH_ARGUMENTS:
        raise UserError(f"model {name}: torchvision builds it at a fixed width, so --width-mult "
                        f"cannot apply (free widths: {', '.join(sorted(WIDTH_ARGUMENTS))}; "
                        "other families come in named widths such as shufflenet_v2_x0_5)")
    return {WIDTH_ARGUMENTS[name]: width}


def build_torchvision_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build `name` (e.g. mobilenet_v3_small) with random weights; kwargs such as width_mult."""
    import torchvision

    if name not in torchvision_classifier_names():
        raise UserError(f"unknown torchvision classifier {name!r} "
                        "(see torchvision.models.list_models())")
    try:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    except TypeError as exc:
        raise UserError(f"torchvision model {name}: {exc}") from None

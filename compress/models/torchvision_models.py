"""torchvision classifiers by name, built without pretrained weights."""

from __future__ import annotations

from typing import Any

from torch import nn

from compress.errors import UserError


def torchvision_classifier_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


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

"""timm classifiers by name (the optional `timm` extra), built without pretrained weights:
nothing is downloaded, a user's own weights are imported afterwards."""

from __future__ import annotations

from typing import Any

from torch import nn

from compress.errors import UserError

PREFIX = "timm/"  # timm/NAME always means timm; a bare NAME is torchvision's first


def timm_available() -> bool:
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


def is_timm_classifier(name: str) -> bool:
    if not timm_available():
        return False
    import timm

    return timm.is_model(name)


def build_timm_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    if not timm_available():
        raise UserError(f"model {name}: a timm model, and timm is not installed (pip install "
                        "'compress-vision[timm]')")
    import timm

    if not timm.is_model(name):
        raise UserError(f"unknown timm model {name!r} (see timm.list_models())")
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    except TypeError as exc:
        raise UserError(f"timm model {name}: {exc}") from None

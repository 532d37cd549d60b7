"""Stage registry: every stage kind is registered by name and created by `create_stage`."""

from __future__ import annotations

import warnings
from typing import Any

from compress.stages.base import Stage

_REGISTRY: dict[str, type[Stage]] = {}


def register_stage(cls: type[Stage]) -> type[Stage]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        warnings.warn(f"stage {cls.name!r} registered again; the new one replaces the old")
    _REGISTRY[cls.name] = cls
    return cls


def list_stages() -> list[str]:
    return sorted(_REGISTRY)


def stage_class(name: str) -> type[Stage]:
    if name not in _REGISTRY:
        raise KeyError(name)
    return _REGISTRY[name]


def create_stage(name: str, options: dict[str, Any]) -> Stage:
    """Build a stage from its recipe options (raises pydantic.ValidationError on bad keys)."""
    cls = stage_class(name)
    return cls(cls.Config(**options))

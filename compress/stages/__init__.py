"""Stage registry: every stage kind is registered by name and created by `create_stage`."""

from __future__ import annotations

import warnings
from typing import Any

from compress.stages.base import Stage, StageConfig, StageContext, TrainingData

_REGISTRY: dict[str, type[Stage]] = {}


def register_stage(cls: type[Stage]) -> type[Stage]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        warnings.warn(f"stage {cls.name!r} registered again; the new one replaces the old")
    _REGISTRY[cls.name] = cls
    return cls


def list_stages() -> list[str]:
    _load_builtin_stages()
    return sorted(_REGISTRY)


def stage_class(name: str) -> type[Stage]:
    _load_builtin_stages()
    if name not in _REGISTRY:
        raise KeyError(name)
    return _REGISTRY[name]


def create_stage(name: str, options: dict[str, Any]) -> Stage:
    """Build a stage from its recipe options (raises pydantic.ValidationError on bad keys)."""
    cls = stage_class(name)
    return cls(cls.Config(**options))


def _load_builtin_stages() -> None:
    # Imported here, not at module top, so that `compress --help` stays fast.
    from compress.stages import (decompose, drop, export, finetune, prune,  # noqa: F401
                                 quantize, resize)


__all__ = ["Stage", "StageConfig", "StageContext", "TrainingData", "create_stage",
           "list_stages", "register_stage", "stage_class"]

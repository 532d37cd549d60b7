"""Leaf modules as plain data, so edited models (pruned, decomposed) can be stored.

`module_to_spec` and `module_from_spec` cover the layer types that compression stages
produce; together with the base model's spec they rebuild any edited module tree.
"""

from __future__ import annotations

from typing import Any

from torch import nn

# Type name -> constructor attributes that define the layer's shape and behaviour.
_LAYER_ATTRS: dict[type, tuple[str, ...]] = {
    nn.Conv2d: ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                "groups", "padding_mode"),
    nn.Linear: ("in_features", "out_features"),
    nn.BatchNorm2d: ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    nn.BatchNorm1d: ("num_features", "eps", "momentum", "affine", "track_running_stats"),
}
_PARAMETERLESS = (nn.Identity, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU,
                  nn.Sigmoid, nn.Flatten, nn.Dropout)
_TYPES = {t.__name__: t for t in (*_LAYER_ATTRS, *_PARAMETERLESS, nn.Sequential)}


def module_to_spec(module: nn.Module) -> dict[str, Any]:
    """Describe a layer (or a Sequential of layers) as JSON-able data."""
    kind = type(module)
    if kind is nn.Sequential:
        return {"type": "Sequential",
                "children": [[name, module_to_spec(child)] for name, child in module.named_children()]}
    if kind in _LAYER_ATTRS:
        spec: dict[str, Any] = {"type": kind.__name__}
        for attr in _LAYER_ATTRS[kind]:
            value = getattr(module, attr)
            spec[attr] = list(value) if isinstance(value, tuple) else value
        if kind in (nn.Conv2d, nn.Linear):
            spec["bias"] = module.bias is not None
        return spec
    if kind in _PARAMETERLESS:
        return {"type": kind.__name__}
    raise TypeError(f"cannot describe a {kind.__name__} as data; add it to module_spec")


def module_from_spec(spec: dict[str, Any]) -> nn.Module:
    kind = _TYPES.get(spec.get("type", ""))
    if kind is None:
        raise ValueError(f"unknown layer type in checkpoint: {spec.get('type')!r}")
    if kind is nn.Sequential:
        container = nn.Sequential()
        for name, child in spec["children"]:
            container.add_module(name, module_from_spec(child))
        return container
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    for key in ("kernel_size", "stride", "padding", "dilation"):
        if isinstance(kwargs.get(key), list):
            kwargs[key] = tuple(kwargs[key])
    return kind(**kwargs)


def structural_edits(model: nn.Module, base: nn.Module) -> list[dict[str, Any]]:
    """The replacements that turn `base` into `model`'s structure, as data.

    A module is recorded when its type changed, its children changed, or (for a leaf)
    its shape attributes changed; everything else is taken from the base model.
    """
    edits: list[dict[str, Any]] = []

    def visit(path: str, current: nn.Module, original: nn.Module) -> None:
        current_children = dict(current.named_children())
        original_children = dict(original.named_children())
        same_kind = type(current) is type(original)
        if not same_kind or current_children.keys() != original_children.keys():
            edits.append({"path": path, "module": module_to_spec(current)})
            return
        if not current_children:
            if type(current) in _LAYER_ATTRS and module_to_spec(current) != module_to_spec(original):
                edits.append({"path": path, "module": module_to_spec(current)})
            return
        for name, child in current_children.items():
            visit(f"{path}.{name}" if path else name, child, original_children[name])

    visit("", model, base)
    return edits


def apply_edits(model: nn.Module, edits: list[dict[str, Any]]) -> nn.Module:
    for edit in edits:
        replacement = module_from_spec(edit["module"])
        if edit["path"] == "":
            return replacement
        model.set_submodule(edit["path"], replacement)
    return model

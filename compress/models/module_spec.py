"""Edited models (pruned, decomposed, blocks dropped) as plain data, so they can be stored.

An edit is one of two kinds:
  replaced  {"path", "module"}: a module whose type or children changed; `module` is
            its spec (`module_to_spec`), for the layer types that compression stages
            produce (factor Sequentials, Identity for a dropped block).
  resized   {"path", "type", "attributes", "shapes"}: a module of any type whose own
            parameters or buffers changed shape (channel pruning); `shapes` lists them
            all and `attributes` the public constructor-like attributes that changed
            with them (in_channels, groups, normalized_shape, num_heads, ...), as
            torch-pruning's own state_dict helper records them.
Together with the base model's spec they rebuild the edited module tree.
"""

from __future__ import annotations

from typing import Any

import torch
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


_SCALARS = (bool, int, float, str, type(None))


def _plain_attributes(module: nn.Module) -> dict[str, Any]:
    """Public attributes that are plain data (numbers, strings, tuples of them)."""
    found = {}
    for name, value in vars(module).items():
        if name.startswith("_") or name == "training":
            continue
        if isinstance(value, _SCALARS) or (isinstance(value, (tuple, list))
                                           and all(isinstance(v, _SCALARS) for v in value)):
            found[name] = list(value) if isinstance(value, tuple) else value
    return found


def _own_shapes(module: nn.Module) -> dict[str, list[int]]:
    tensors = {**module._parameters, **module._buffers}
    return {name: list(t.shape) for name, t in tensors.items() if t is not None}


def structural_edits(model: nn.Module, base: nn.Module) -> list[dict[str, Any]]:
    """The edits that turn `base` into `model`'s structure, as data (see the module doc)."""
    edits: list[dict[str, Any]] = []

    def visit(path: str, current: nn.Module, original: nn.Module) -> None:
        current_children = dict(current.named_children())
        original_children = dict(original.named_children())
        if type(current) is not type(original) or \
                current_children.keys() != original_children.keys():
            edits.append({"path": path, "module": module_to_spec(current)})
            return
        shapes = _own_shapes(current)
        if shapes != _own_shapes(original):
            before = _plain_attributes(original)
            changed = {k: v for k, v in _plain_attributes(current).items()
                       if k not in before or before[k] != v}
            edits.append({"path": path, "type": type(current).__name__,
                          "attributes": changed, "shapes": shapes})
        for name, child in current_children.items():
            visit(f"{path}.{name}" if path else name, child, original_children[name])

    visit("", model, base)
    return edits


def apply_edits(model: nn.Module, edits: list[dict[str, Any]]) -> nn.Module:
    """Rebuild the edited tree; tensors are allocated on the current default device, so
    under `torch.device("meta")` nothing is allocated (sizes are checked before)."""
    for edit in edits:
        if "module" in edit:
            replacement = module_from_spec(edit["module"])
            if edit["path"] == "":
                return replacement
            model.set_submodule(edit["path"], replacement)
        else:
            _resize(model.get_submodule(edit["path"]) if edit["path"] else model, edit)
    return model


def _resize(module: nn.Module, edit: dict[str, Any]) -> None:
    if type(module).__name__ != edit["type"]:
        raise ValueError(f"edit of {edit['path']!r}: the model has a {type(module).__name__} "
                         f"there, the edit a {edit['type']}")
    for name, value in edit["attributes"].items():
        if not isinstance(value, (*_SCALARS, list)):
            raise ValueError(f"edit of {edit['path']!r}: attribute {name} is not plain data")
        old = getattr(module, name, None)
        setattr(module, name, tuple(value) if isinstance(old, tuple) else value)
    for name, shape in edit["shapes"].items():
        if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise ValueError(f"edit of {edit['path']!r}: shape of {name} is not a list of sizes")
        if name in module._parameters and module._parameters[name] is not None:
            old = module._parameters[name]
            module._parameters[name] = nn.Parameter(torch.empty(shape, dtype=old.dtype),
                                                    requires_grad=old.requires_grad)
        elif name in module._buffers and module._buffers[name] is not None:
            module._buffers[name] = torch.empty(shape, dtype=module._buffers[name].dtype)
        else:
            raise ValueError(f"edit of {edit['path']!r}: the {edit['type']} has no tensor "
                             f"{name!r}")

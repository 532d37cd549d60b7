"""Build models from the Kindle-style YAML format of the competition teams.

A config is a mapping with `input_channel`, `depth_multiple`, `width_multiple` and
`backbone`: rows `[repeat, Module, args]`. The result is a `KindleModel` whose `model`
attribute is an `nn.Sequential` with one entry per row, exactly as the teams' code builds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch import nn

from compress.errors import UserError
from compress.file_kinds import MODEL, read_yaml_of_kind, type_name
from compress.models.kindle_blocks import (
    Bottleneck,
    Conv,
    DWConv,
    InvertedResidualv2,
    InvertedResidualv3,
    Linear,
    activation_type,
    make_divisible,
)


class KindleModel(nn.Module):
    """The teams' `Model`: a thin wrapper whose `model` is the backbone Sequential."""

    def __init__(self, backbone: nn.Sequential):
        super().__init__()
        self.model = backbone

    def forward(self, x):
        return self.model(x)


@dataclass
class _Row:
    """One backbone row being built: what the row builder needs to know."""

    in_channel: int
    args: list
    repeat: int
    width: float


def _as_module(modules: list[nn.Module], always_sequential: bool) -> nn.Module:
    # The teams' generators wrap lists in a Sequential even for one block (IR, Bottleneck),
    # and return single Conv/pool modules bare: state_dict keys depend on it.
    if len(modules) == 1 and not always_sequential:
        return modules[0]
    return nn.Sequential(*modules)


def _scaled(row: _Row, channels: float) -> int:
    return make_divisible(channels * row.width)


def _conv_like(block: type, fixed: bool = False) -> Callable[[_Row], tuple[nn.Module, int]]:
    def build(row: _Row) -> tuple[nn.Module, int]:
        # FixedConv keeps its channel count as written: no width multiple, no rounding.
        out = int(row.args[0]) if fixed else _scaled(row, row.args[0])
        args = [row.in_channel, out, *row.args[1:]]
        stride = args[3] if len(args) > 3 else 1
        modules = []
        # A repeat below 2 (even 0) builds one bare block in the teams' code.
        repeat = max(row.repeat, 1)
        for i in range(repeat):
            # The stride of a repeated conv applies at the end of the repeat only.
            if len(args) > 3:
                args[3] = stride if i == repeat - 1 else 1
            modules.append(block(*args))
            args[0] = out
        return _as_module(modules, always_sequential=False), out
    return build


def _bottleneck(row: _Row) -> tuple[nn.Module, int]:
    out = _scaled(row, row.args[0])
    modules = [Bottleneck(row.in_channel, row.in_channel, *row.args[1:])
               for _ in range(row.repeat - 1)]
    modules.append(Bottleneck(row.in_channel, out, *row.args[1:]))
    return _as_module(modules, always_sequential=True), out


def _inverted_residual_v2(row: _Row) -> tuple[nn.Module, int]:
    _, expansion, stride = row.args
    inp, out = row.in_channel, _scaled(row, row.args[0])
    modules = []
    for i in range(row.repeat):
        modules.append(InvertedResidualv2(inp, out, stride if i == 0 else 1, expansion))
        inp = out
    return _as_module(modules, always_sequential=True), out


def _inverted_residual_v3(row: _Row) -> tuple[nn.Module, int]:
    kernel, expansion, channels, use_se, use_hs, stride = row.args
    inp, out = row.in_channel, _scaled(row, channels)
    modules = []
    for i in range(row.repeat):
        hidden = make_divisible(inp * expansion)
        modules.append(InvertedResidualv3(inp, hidden, out, kernel, stride if i == 0 else 1,
                                          bool(use_se), bool(use_hs)))
        inp = out
    return _as_module(modules, always_sequential=True), out


def _linear(row: _Row) -> tuple[nn.Module, int]:
    # The teams' LinearGenerator ignores the repeat ("TODO: Apply repeat"): one Linear.
    out = row.args[0]
    act = row.args[1] if len(row.args) > 1 else None
    return Linear(row.in_channel, out, act), out


def _pool(pool_type: type) -> Callable[[_Row], tuple[nn.Module, int]]:
    def build(row: _Row) -> tuple[nn.Module, int]:
        # The arguments go to torch as written: no autopad for pools.
        modules = [pool_type(*row.args) for _ in range(max(row.repeat, 1))]
        return _as_module(modules, always_sequential=False), row.in_channel
    return build


def _no_channel_change(factory: Callable[[], nn.Module]) -> Callable[[_Row], tuple[nn.Module, int]]:
    return lambda row: (factory(), row.in_channel)


def _global_avg_pool(row: _Row) -> tuple[nn.Module, int]:
    # The teams' GlobalAvgPool takes an optional output size and ignores the repeat.
    return nn.AdaptiveAvgPool2d(row.args[0] if row.args else 1), row.in_channel


# Module name in the YAML -> (row builder, allowed argument counts).
ROW_BUILDERS: dict[str, tuple[Callable[[_Row], tuple[nn.Module, int]], range]] = {
    "Conv": (_conv_like(Conv), range(1, 7)),
    "FixedConv": (_conv_like(Conv, fixed=True), range(1, 7)),
    "DWConv": (_conv_like(DWConv), range(1, 6)),
    "Bottleneck": (_bottleneck, range(1, 6)),
    "InvertedResidualv2": (_inverted_residual_v2, range(3, 4)),
    "InvertedResidualv3": (_inverted_residual_v3, range(6, 7)),
    "Linear": (_linear, range(1, 3)),
    "Flatten": (_no_channel_change(nn.Flatten), range(0, 1)),
    "GlobalAvgPool": (_global_avg_pool, range(0, 2)),
    "MaxPool": (_pool(nn.MaxPool2d), range(1, 7)),
    "AvgPool": (_pool(nn.AvgPool2d), range(1, 7)),
}


def load_kindle_yaml(path: str | Path) -> dict[str, Any]:
    """Read a model YAML file; errors name the file."""
    config = read_yaml_of_kind(path, "model config", (MODEL,), "a 'backbone' list")
    validate_kindle_config(config, source=str(path))
    return config


def validate_kindle_config(config: Any, source: str = "model config") -> None:
    if not isinstance(config, dict):
        raise UserError(f"{source}: expected a mapping with a 'backbone' list")
    for key in ("input_channel", "backbone"):
        if key not in config:
            raise UserError(f"{source}: missing key '{key}'")
    backbone = config["backbone"]
    if not isinstance(backbone, list) or not backbone:
        raise UserError(f"{source}: 'backbone' must be a non-empty list of [repeat, Module, args]")
    for key in ("depth_multiple", "width_multiple"):
        value = config.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise UserError(f"{source}: {key} must be a number above 0, got {value!r}")
    for index, row in enumerate(backbone):
        where = f"{source}: backbone.{index}"
        if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], int)
                and isinstance(row[2], list)):
            raise UserError(f"{where}: expected [repeat, Module, [args]], got {row!r}")
        name, args = row[1], row[2]
        if name not in ROW_BUILDERS:
            known = ", ".join(sorted(ROW_BUILDERS))
            raise UserError(f"{where}: unknown module {name!r} (known: {known})")
        if len(args) not in ROW_BUILDERS[name][1]:
            allowed = ROW_BUILDERS[name][1]
            raise UserError(f"{where}: {name} takes {allowed.start} to {allowed.stop - 1} "
                            f"arguments, got {len(args)}")
        for position, arg in enumerate(args):
            wanted = row_argument_wanted(name, position, arg)
            if wanted:
                raise UserError(f"{where}.2.{position}: {name} wants {wanted} there, got "
                                f"{type_name(arg)}")


# Where a module's row takes its activation's name (elsewhere its arguments are numbers).
_ACTIVATION_POSITION = {"Conv": 5, "FixedConv": 5, "DWConv": 4, "Bottleneck": 4, "Linear": 1}


def row_argument_wanted(module: str, position: int, arg: Any) -> str:
    """What a backbone row of `module` wants at `position` where `arg` is not that ("" where
    it is): an activation's name or null at the activation's place; elsewhere a number, a
    pair of integers (a kernel per side) or null."""
    if position == _ACTIVATION_POSITION.get(module):
        fits = arg is None or isinstance(arg, str) and activation_type(arg) is not None
        return "" if fits else "an activation (ReLU, HardSwish, ...) or null"
    if isinstance(arg, list):
        fits = len(arg) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                     for v in arg)
    else:
        fits = arg is None or isinstance(arg, (int, float))
    return "" if fits else "a number, a pair of integers (a kernel per side) or null"


def build_kindle_model(config: dict[str, Any], source: str = "model config") -> KindleModel:
    """Build the model a Kindle-style config describes."""
    validate_kindle_config(config, source)
    depth = float(config.get("depth_multiple", 1.0))
    width = float(config.get("width_multiple", 1.0))
    in_channel = int(config["input_channel"])
    layers = []
    for index, (repeat, name, args) in enumerate(config["backbone"]):
        repeat = max(round(repeat * depth), 1) if repeat > 1 else repeat
        builder = ROW_BUILDERS[name][0]
        try:
            module, in_channel = builder(_Row(in_channel, list(args), repeat, width))
        except (TypeError, ValueError) as exc:
            raise UserError(f"{source}: backbone.{index} ({name} {args}): {exc}") from None
        layers.append(module)
    return KindleModel(nn.Sequential(*layers))


def kindle_num_classes(config: dict[str, Any]) -> int | None:
    """Output width of the last Linear row, the number of classes the model predicts."""
    for _, name, args in reversed(config["backbone"]):
        if name == "Linear":
            return int(args[0])
    return None

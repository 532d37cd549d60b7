"""The space of model designs `compress arch-search` draws from, in the competition's model
YAML terms (`compress.models.kindle`): a backbone of rows, some fixed, some searched.

    architecture:
      input_size: {choices: [96, 112, 128]}
      depth_multiple: {choices: [0.5, 0.75, 1.0]}
      width_multiple: {low: 0.5, high: 1.0, step: 0.25}
      train: {lr: {low: 0.01, high: 0.1, log: true}, randaugment_magnitude: {low: 3, high: 12}}
      backbone:
        - [1, Conv, [16, 3, 2, null, 1, HardSwish]]       # a fixed row, as in a model YAML
        - module: {choices: [InvertedResidualv3, InvertedResidualv2, DWConv, none]}
          repeat: {low: 1, high: 3}                         # a slot: one row drawn per trial
          channels: {choices: [24, 32]}
          kernel: {choices: [3, 5]}
          expansion: {choices: [3, 4, 6]}
          se: {choices: [0, 1]}
          hs: 0
          stride: 2
        - [1, Conv, [{choices: [640, 960]}, 1, 1]]         # a fixed row with a searched value
        - [1, GlobalAvgPool, []]
        - [1, Flatten, []]
        - [1, Linear, [6]]

Any value may be fixed or a range (`{low, high[, step, log]}` or `{choices}`, as in a recipe
search). A slot's `module: none` leaves its row out of the design. Each searched value is a
parameter of the Optuna study named by its place: `backbone.1.channels`,
`backbone.2.args.0`, `width_multiple`, `train.lr`. Every value the space can take is built
before the first trial (`check_space`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from compress.errors import UserError, first_line
from compress.models.kindle import ROW_BUILDERS, build_kindle_model
from compress.recipe.search_space import ParamSpec

SLOT_MODULES = ("InvertedResidualv3", "InvertedResidualv2", "Bottleneck", "DWConv", "Conv",
                "none")
# Row kinds whose argument at this index is a stride (the rest never stride, or as pools).
_STRIDE_ARG = {"Conv": 2, "FixedConv": 2, "DWConv": 2, "InvertedResidualv3": 5,
               "InvertedResidualv2": 2, "MaxPool": 1, "AvgPool": 1}

def _searched_or_value(value: Any, where: str = "") -> Any:
    """A mapping is a range or choices (drawn per trial); anything else a fixed value,
    checked by check_space."""
    if not isinstance(value, dict):
        return value
    try:
        return ParamSpec(**value)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown key {error['loc'][0]!r} (a range is low, high, step, log; " \
                "or choices)"
        raise ValueError(f"{where}{message}") from None


# A value that may be fixed or searched.
Value = Annotated[Any, BeforeValidator(_searched_or_value)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Slot(_Strict):
    """One backbone row drawn per trial. `expansion` is the hidden width's ratio (inverted
    residuals: over the input; Bottleneck: over the output); `se` and `hs` switch on
    squeeze-excite (InvertedResidualv3 only) and HardSwish instead of ReLU."""

    module: Value
    channels: Value
    repeat: Value = 1
    kernel: Value = 3
    expansion: Value = 1.0
    se: Value = 0
    hs: Value = 0
    stride: Value = 1


class TrainKnobs(_Strict):
    """Training values drawn per trial; unset, the data YAML's INIT_LR and RandAugment
    level apply."""

    lr: Value = Field(None, description="OneCycleLR's peak (INIT_LR)")
    randaugment_magnitude: Value = Field(
        None, description="RandAugment's magnitude (AUG_TRAIN_PARAMS.level)")


class ArchitectureSpace(_Strict):
    input_channel: int = Field(3, ge=1)
    input_size: Value
    depth_multiple: Value = 1.0
    width_multiple: Value = 1.0
    train: TrainKnobs = TrainKnobs()
    backbone: list[Any]  # Slot or fixed row [repeat, Module, [args]]: see load_space

    @field_validator("backbone")
    @classmethod
    def _not_empty(cls, rows: list) -> list:
        if not rows:
            raise ValueError("the backbone is empty")
        return rows

    def params(self) -> dict[str, ParamSpec]:
        """Every searched value by its parameter name, in the order of the space."""
        found: dict[str, ParamSpec] = {}
        for name in ("input_size", "depth_multiple", "width_multiple"):
            _collect(found, name, getattr(self, name))
        for name in TrainKnobs.model_fields:
            _collect(found, f"train.{name}", getattr(self.train, name))
        for index, row in enumerate(self.backbone):
            if isinstance(row, Slot):
                for name in Slot.model_fields:
                    _collect(found, f"backbone.{index}.{name}", getattr(row, name))
            else:
                _collect(found, f"backbone.{index}.repeat", row[0])
                for position, arg in enumerate(row[2]):
                    _collect(found, f"backbone.{index}.args.{position}", arg)
        return found

    def design(self, values: dict[str, Any]) -> "Design":
        """The design these parameter values pick: a model YAML mapping, its input size and
        training values."""
        def pick(name: str, value: Any) -> Any:
            return values[name] if isinstance(value, ParamSpec) else value

        rows = []
        for index, row in enumerate(self.backbone):
            if isinstance(row, Slot):
                chosen = {name: pick(f"backbone.{index}.{name}", getattr(row, name))
                          for name in Slot.model_fields}
                if chosen["module"] != "none":
                    rows.append(_slot_row(chosen))
            else:
                rows.append([pick(f"backbone.{index}.repeat", row[0]), row[1],
                             [pick(f"backbone.{index}.args.{position}", arg)
                              for position, arg in enumerate(row[2])]])
        config = {"input_channel": self.input_channel,
                  "depth_multiple": pick("depth_multiple", self.depth_multiple),
                  "width_multiple": pick("width_multiple", self.width_multiple),
                  "backbone": rows}
        return Design(config, int(pick("input_size", self.input_size)),
                      pick("train.lr", self.train.lr),
                      pick("train.randaugment_magnitude", self.train.randaugment_magnitude))


@dataclass(frozen=True)
class Design:
    config: dict[str, Any]  # the model YAML mapping (Kindle format)
    input_size: int
    lr: float | None  # None: the data YAML's INIT_LR
    randaugment_magnitude: int | None  # None: the data YAML's level

    @property
    def key(self) -> str:
        """Equal for equal designs, whatever parameters drew them (a slot left out draws
        values that change nothing)."""
        return json.dumps([self.config, self.input_size, self.lr, self.randaugment_magnitude],
                          sort_keys=True)


def _backbone_row(row: Any, where: str) -> Slot | list:
    """A slot mapping as a Slot, a fixed row with its searched values as ParamSpecs."""
    from compress.recipe.loading import describe_error

    if isinstance(row, dict):
        try:
            return Slot(**row)
        except ValidationError as exc:
            raise UserError(f"{where}.{describe_error(exc.errors()[0])}") from None
    if not (isinstance(row, list) and len(row) == 3 and isinstance(row[2], list)):
        raise UserError(f"{where}: expected [repeat, Module, [args]] or a slot mapping, "
                        f"got {row!r}")
    try:
        return [_searched_or_value(row[0], "repeat: "), row[1],
                [_searched_or_value(arg, f"args.{position}: ")
                 for position, arg in enumerate(row[2])]]
    except ValueError as exc:
        raise UserError(f"{where}.{exc}") from None


def _collect(found: dict[str, ParamSpec], name: str, value: Any) -> None:
    if isinstance(value, ParamSpec):
        found[name] = value


def _slot_row(chosen: dict[str, Any]) -> list:
    """The model YAML row of a slot's drawn values, in each module's argument order."""
    module, channels, stride = chosen["module"], chosen["channels"], chosen["stride"]
    act = "HardSwish" if chosen["hs"] else "ReLU"
    args = {
        "InvertedResidualv3": [chosen["kernel"], chosen["expansion"], channels,
                               int(chosen["se"]), int(chosen["hs"]), stride],
        "InvertedResidualv2": [channels, chosen["expansion"], stride],
        "DWConv": [channels, chosen["kernel"], stride, None, act],
        "Conv": [channels, chosen["kernel"], stride, None, 1, act],
        "Bottleneck": [channels, True, 1, chosen["expansion"], act],
    }[module]
    return [chosen["repeat"], module, args]


def load_space(raw: Any, where: str) -> ArchitectureSpace:
    """The `architecture:` block, typed; errors name `where` and the key."""
    from compress.recipe.loading import describe_error

    if not isinstance(raw, dict):
        raise UserError(f"{where}: architecture must be a mapping (input_size, backbone, ...)")
    if isinstance(raw.get("backbone"), list):
        raw = {**raw, "backbone": [_backbone_row(row, f"{where}: architecture.backbone.{index}")
                                   for index, row in enumerate(raw["backbone"])]}
    try:
        return ArchitectureSpace(**raw)
    except ValidationError as exc:
        raise UserError(f"{where}: architecture.{describe_error(exc.errors()[0])}") from None


def check_space(space: ArchitectureSpace, classes: int, where: str) -> None:
    """Refuse a space with a value no design can take, before the first trial: unknown
    modules, a Bottleneck asked to stride, channels or kernels that make no layer, strides
    that leave less than a pixel, a last Linear that does not predict `classes`; then build
    (shapes only) the smallest design, the largest, and every value of every parameter."""
    import torch

    params = space.params()
    _check_values(space, params, where)
    last = space.backbone[-1]
    if isinstance(last, Slot) or last[1] != "Linear" or last[2][:1] != [classes]:
        raise UserError(f"{where}: architecture.backbone: the last row must be [1, Linear, "
                        f"[{classes}]] (the data has {classes} classes)")
    smallest_input = min(_examples(space.input_size))
    strides = _largest_stride(space)
    if strides > smallest_input:
        raise UserError(f"{where}: architecture.backbone strides by up to {strides}x, more "
                        f"than the smallest input_size ({smallest_input} px): the last layers "
                        "would see less than a pixel (fewer strides or a larger input)")
    low = {name: spec.examples()[0] for name, spec in params.items()}
    high = {name: spec.examples()[-1] for name, spec in params.items()}
    # Each value alone first (an error names it), then every value at either end together.
    trials = [(name, {**low, name: value}) for name, spec in params.items()
              for value in spec.examples()] + [("", low), ("", high)]
    for name, values in trials:
        design = space.design(values)
        try:
            with torch.device("meta"):
                model = build_kindle_model(copy.deepcopy(design.config), "design").eval()
                model(torch.empty(1, space.input_channel, smallest_input, smallest_input))
        except (UserError, RuntimeError, ValueError, TypeError) as exc:
            what = f"architecture.{name} = {values[name]!r}" if name else \
                "architecture (every value at its " + ("low" if values is low else "high") + \
                " end)"
            raise UserError(f"{where}: {what} builds no model ({first_line(exc)})") from None


def _examples(value: Any) -> list:
    return value.examples() if isinstance(value, ParamSpec) else [value]


def _check_values(space: ArchitectureSpace, params: dict[str, ParamSpec], where: str) -> None:
    def refuse(name: str, message: str) -> None:
        raise UserError(f"{where}: architecture.{name}: {message}")

    def numbers(name: str, value: Any, whole: bool, lowest: float, highest: float | None = None,
                above: bool = False) -> None:
        values = _examples(value)
        kind = int if whole else (int, float)
        for v in values:
            if not isinstance(v, kind) or isinstance(v, bool) or \
                    (v <= lowest if above else v < lowest) or \
                    (highest is not None and v > highest):
                wanted = "a whole number" if whole else "a number"
                bounds = f"above {lowest}" if above else f">= {lowest}"
                if highest is not None:
                    bounds += f" and <= {highest}"
                refuse(name, f"every value must be {wanted} {bounds}, got {v!r}")

    numbers("input_size", space.input_size, True, 8)
    numbers("depth_multiple", space.depth_multiple, False, 0, above=True)
    numbers("width_multiple", space.width_multiple, False, 0, above=True)
    if space.train.lr is not None:
        numbers("train.lr", space.train.lr, False, 0, above=True)
    if space.train.randaugment_magnitude is not None:
        numbers("train.randaugment_magnitude", space.train.randaugment_magnitude, True, 0, 30)
    for index, row in enumerate(space.backbone):
        if isinstance(row, list):
            if row[1] not in ROW_BUILDERS:
                refuse(f"backbone.{index}", f"unknown module {row[1]!r} (known: "
                       f"{', '.join(sorted(ROW_BUILDERS))})")
            numbers(f"backbone.{index}.repeat", row[0], True, 0)
            continue
        modules = _examples(row.module)
        for module in modules:
            if module not in SLOT_MODULES:
                refuse(f"backbone.{index}.module", f"{module!r} is not a slot module (one of "
                       f"{', '.join(SLOT_MODULES)})")
        if "Bottleneck" in modules and max(_examples(row.stride)) > 1:
            refuse(f"backbone.{index}", "Bottleneck cannot stride (the teams' Bottleneck has "
                   "no stride): give the slot stride 1 or drop Bottleneck from its choices")
        for field in ("channels", "repeat", "kernel", "stride"):
            numbers(f"backbone.{index}.{field}", getattr(row, field), True, 1)
        if any(k % 2 == 0 for k in _examples(row.kernel)):
            refuse(f"backbone.{index}.kernel", "kernels must be odd (same padding)")
        numbers(f"backbone.{index}.expansion", row.expansion, False, 0, above=True)
        for flag in ("se", "hs"):
            if any(v not in (0, 1) for v in _examples(getattr(row, flag))):
                refuse(f"backbone.{index}.{flag}", "every value must be 0 or 1 (off or on)")
    widths = _examples(space.width_multiple)
    for name, spec in params.items():
        if name.endswith(".channels") and min(spec.examples()) * min(widths) < 1:
            refuse(name, f"{min(spec.examples())} channels at width_multiple {min(widths)} is "
                   "under one channel")


def _largest_stride(space: ArchitectureSpace) -> int:
    """The most the backbone can shrink its input: each row's largest stride, every slot
    present."""
    total = 1
    for row in space.backbone:
        if isinstance(row, Slot):
            modules = _examples(row.module)
            if modules != ["none"]:
                total *= max(_examples(row.stride))
        elif row[1] in _STRIDE_ARG and len(row[2]) > _STRIDE_ARG[row[1]]:
            strides = [s for s in _examples(row[2][_STRIDE_ARG[row[1]]]) if isinstance(s, int)]
            total *= max(strides, default=1)
        elif row[1] in ("MaxPool", "AvgPool") and row[2]:  # stride defaults to the kernel
            total *= max(_examples(row[2][0]))
    return total

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

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from compress.errors import UserError, first_line
from compress.file_kinds import type_name
from compress.models.kindle import ROW_BUILDERS, build_kindle_model, row_argument_wanted
from compress.recipe.search_space import ParamSpec

SLOT_MODULES = ("InvertedResidualv3", "InvertedResidualv2", "Bottleneck", "DWConv", "Conv",
                "none")
# Row kinds whose argument at this index is a stride (the rest never stride, or as pools).
_STRIDE_ARG = {"Conv": 2, "FixedConv": 2, "DWConv": 2, "InvertedResidualv3": 5,
               "InvertedResidualv2": 2, "MaxPool": 1, "AvgPool": 1}

def _searched_or_value(value: Any, where: str = "") -> Any:
    """A mapping is a range or choices (drawn per trial); anything else a fixed value,
    checked by the validators of its field."""
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


@dataclass(frozen=True)
class _Numbers:
    """A pydantic validator: every value a fixed or searched key can take (the fixed value,
    a range's ends, every choice) is a number within bounds; Field's own bounds would see
    the range, not its values."""

    whole: bool
    lowest: float
    highest: float | None = None
    above: bool = False  # `lowest` itself is out
    optional: bool = False  # None (the key unset) passes

    def __call__(self, value: Any) -> Any:
        if value is None and self.optional:
            return value
        kind = int if self.whole else (int, float)
        for v in _examples(value):
            if not isinstance(v, kind) or isinstance(v, bool) or \
                    (v <= self.lowest if self.above else v < self.lowest) or \
                    (self.highest is not None and v > self.highest):
                raise ValueError(f"every value must be {self.wanted}, got {v!r}")
        return value

    @property
    def wanted(self) -> str:
        bounds = f"above {self.lowest}" if self.above else f">= {self.lowest}"
        if self.highest is not None:
            bounds += f" and <= {self.highest}"
        return f"{'a whole number' if self.whole else 'a number'} {bounds}"


def _slot_modules(value: Any) -> Any:
    for module in _examples(value):
        if module not in SLOT_MODULES:
            raise ValueError(f"{module!r} is not a slot module (one of "
                             f"{', '.join(SLOT_MODULES)})")
    return value


def _odd(value: Any) -> Any:
    if any(k % 2 == 0 for k in _examples(value)):
        raise ValueError("kernels must be odd (same padding)")
    return value


def _switch(value: Any) -> Any:
    if any(v not in (0, 1) for v in _examples(value)):
        raise ValueError("every value must be 0 or 1 (off or on)")
    return value


_REPEAT = _Numbers(whole=True, lowest=0)  # a fixed row's: 0 leaves it out
Positive = Annotated[Value, AfterValidator(_Numbers(whole=False, lowest=0, above=True))]
AtLeastOne = Annotated[Value, AfterValidator(_Numbers(whole=True, lowest=1))]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Slot(_Strict):
    """One backbone row drawn per trial. `expansion` is the hidden width's ratio (inverted
    residuals: over the input; Bottleneck: over the output); `se` and `hs` switch on
    squeeze-excite (InvertedResidualv3 only) and HardSwish instead of ReLU."""

    module: Annotated[Value, AfterValidator(_slot_modules)]
    channels: AtLeastOne
    repeat: AtLeastOne = 1
    kernel: Annotated[AtLeastOne, AfterValidator(_odd)] = 3
    expansion: Positive = 1.0
    se: Annotated[Value, AfterValidator(_switch)] = 0
    hs: Annotated[Value, AfterValidator(_switch)] = 0
    stride: AtLeastOne = 1

    @field_validator("stride")
    @classmethod
    def _bottleneck_keeps_size(cls, stride: Any, info: ValidationInfo) -> Any:
        if "Bottleneck" in _examples(info.data.get("module")) and max(_examples(stride)) > 1:
            raise ValueError("Bottleneck cannot stride (the teams' Bottleneck has no stride): "
                             "give the slot stride 1 or drop Bottleneck from its choices")
        return stride


class TrainKnobs(_Strict):
    """Training values drawn per trial; unset, the data YAML's INIT_LR and RandAugment
    level apply."""

    lr: Annotated[Value, AfterValidator(_Numbers(whole=False, lowest=0, above=True,
                                                 optional=True))] = Field(
        None, description="OneCycleLR's peak (INIT_LR)")
    randaugment_magnitude: Annotated[Value, AfterValidator(_Numbers(
        whole=True, lowest=0, highest=30, optional=True))] = Field(
        None, description="RandAugment's magnitude (AUG_TRAIN_PARAMS.level)")


class ArchitectureSpace(_Strict):
    input_channel: int = Field(3, ge=1)
    input_size: Annotated[Value, AfterValidator(_Numbers(whole=True, lowest=8))]
    depth_multiple: Positive = 1.0
    width_multiple: Positive = 1.0
    train: TrainKnobs = TrainKnobs()
    backbone: list[Any]  # Slot or fixed row [repeat, Module, [args]]: see load_space

    @field_validator("backbone")
    @classmethod
    def _not_empty(cls, rows: list) -> list:
        if not rows:
            raise ValueError("the backbone is empty")
        return rows

    @model_validator(mode="after")
    def _rows_and_widths(self) -> ArchitectureSpace:
        """Fixed rows name known modules and repeat whole times; every slot keeps at least
        one channel at the narrowest width. The message names the key: the loc is empty."""
        for index, row in enumerate(self.backbone):
            if isinstance(row, Slot):
                continue
            if row[1] not in ROW_BUILDERS:
                raise ValueError(f"backbone.{index}: unknown module {row[1]!r} (known: "
                                 f"{', '.join(sorted(ROW_BUILDERS))})")
            try:
                _REPEAT(row[0])
            except ValueError as exc:
                raise ValueError(f"backbone.{index}.repeat: {exc}") from None
        widths = _examples(self.width_multiple)
        for name, spec in self.params().items():
            if name.endswith(".channels") and min(spec.examples()) * min(widths) < 1:
                raise ValueError(f"{name}: {min(spec.examples())} channels at width_multiple "
                                 f"{min(widths)} is under one channel")
        return self

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
    if not (isinstance(row, list) and len(row) == 3 and isinstance(row[1], str)
            and isinstance(row[2], list)):
        raise UserError(f"{where}: expected [repeat, Module, [args]] or a slot mapping, "
                        f"got {row!r}")
    try:
        args = [_searched_or_value(arg, f"2.{position}: ") for position, arg in enumerate(row[2])]
        fixed = [_searched_or_value(row[0], "0: "), row[1], args]
    except ValueError as exc:
        raise UserError(f"{where}.{exc}") from None
    for position, arg in enumerate(args):
        for value in (arg.choices or []) if isinstance(arg, ParamSpec) else [arg]:
            wanted = row_argument_wanted(row[1], position, value)
            if wanted:
                raise UserError(f"{where}.2.{position}: {row[1]} wants {wanted} there, got "
                                f"{type_name(value)}")
    return fixed


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
    """Refuse a space with a value no design can take, before the first trial: strides
    that leave less than a pixel, a last Linear that does not predict `classes`; then build
    (shapes only) the smallest design, the largest, and every value of every parameter.
    (Unknown modules, a Bottleneck asked to stride, channels or kernels that make no layer
    are refused by `load_space`, by the models' validators.)"""
    import torch

    params = space.params()
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

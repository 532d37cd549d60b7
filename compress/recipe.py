"""Recipe YAML -> validated, typed recipe. Errors name the file, the key and what was wanted.

    checkpoint: checkpoints/mnv3_trashnet.safetensors
    data: {root: ../shared/data/trashnet, split: val}
    device: auto
    bench: {batch_sizes: [1, 8], warmup: 10, runs: 50}
    score: {formula: time}
    stages:
      - prune: {importance: l2, target_macs: 0.5}
      - finetune: {epochs: 5}
Relative paths are relative to the folder `compress` runs in.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from compress.errors import UserError
from compress.search_space import SearchSection
from compress.yamlio import read_yaml_file
from compress.stages import Stage, create_stage, list_stages


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSection(_Strict):
    root: str = "../shared/data/trashnet"
    split: str = Field("val", description="split that F1 and accuracy are measured on")
    batch_size: int = Field(64, ge=1)
    num_workers: int = Field(2, ge=0)
    aug_train: Literal["simple_augment_train", "randaugment_train"] = "randaugment_train"
    n_select: int = Field(2, ge=0)
    level: int | None = Field(9, ge=0, le=30)


class BenchSection(_Strict):
    batch_sizes: list[int] = Field(default_factory=lambda: [1, 8])
    warmup: int = Field(10, ge=0)
    runs: int = Field(50, ge=3)
    threads: int | None = Field(None, ge=1)

    @field_validator("batch_sizes")
    @classmethod
    def _starts_with_one(cls, value: list[int]) -> list[int]:
        if not value or value[0] != 1 or any(b < 1 for b in value):
            raise ValueError("expected a list of batch sizes starting with 1, e.g. [1, 8]")
        return value


class ScoreSection(_Strict):
    formula: Literal["time", "macs"] = "time"
    time_weight: float = Field(0.5, ge=0)
    f1_slope: float = Field(20.0, gt=0)
    f1_floor: float = Field(0.5, ge=0, le=1)
    f1_floor_term: float = 1.0
    baseline_f1: float | None = Field(None, ge=0, le=1, description="null: the input, measured")
    time: Literal["latency", "end_to_end"] = Field(
        "latency", description="latency: batch-1 model latency; end_to_end: wall time to "
        "decode, preprocess and predict the whole evaluated split at batch 1 (the "
        "competition's submit time)")
    baseline_time_ms: float | None = Field(
        None, gt=0, description="null: the input, measured; in ms per image (latency) or ms "
        "for the whole split (end_to_end)")
    baseline_macs: float | None = Field(None, gt=0, description="null: the input, measured")


class Recipe(_Strict):
    checkpoint: str
    data: DataSection = Field(default_factory=DataSection)
    device: str = "auto"
    bench: BenchSection = Field(default_factory=BenchSection)
    score: ScoreSection = Field(default_factory=ScoreSection)
    seed: int = 42
    stages: list[dict[str, dict[str, Any] | None]] = Field(min_length=1)
    search: SearchSection | None = Field(None, description="compress search: the space")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value not in ("auto", "cpu") and not value.startswith("cuda"):
            raise ValueError("expected auto, cpu or cuda[:N]")
        return value

    def stage_objects(self) -> list[Stage]:
        return [create_stage(*_stage_entry(entry)) for entry in self.stages]

    def stage_names(self) -> list[str]:
        return [_stage_entry(entry)[0] for entry in self.stages]


def _stage_entry(entry: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (name, options), = entry.items()
    return name, options or {}


_KEY = r"(?:[^.\[\]]+|\[[^\]]+\])"


def split_path(path: str) -> list[str]:
    """`stages.4.rank_map[model.0.0]` -> ['stages', '4', 'rank_map', 'model.0.0']: dots
    separate keys; a key that holds dots (a layer name) goes in square brackets."""
    if not re.fullmatch(rf"{_KEY}(?:\.?{_KEY})*", path):
        raise UserError(f"{path!r}: expected a dotted path such as stages.1.epochs")
    return [bracketed or plain for bracketed, plain in
            re.findall(r"\[([^\]]+)\]|([^.\[\]]+)", path)]


def set_value(raw: dict[str, Any], path: str, value: Any, what: str = "--set") -> None:
    """Set `path` (see split_path; list indices count from 0) in a raw recipe to `value`.
    Inside `stages`, the path goes straight to a stage's options."""
    keys = split_path(path)
    node: Any = raw
    for depth, key in enumerate(keys[:-1]):
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise UserError(f"{what} {path}: no item {key} (there are {len(node)})")
            node = node[int(key)]
            if depth >= 1 and keys[depth - 1] == "stages" and isinstance(node, dict):
                (stage_name, options), = node.items()
                if options is None:
                    node[stage_name] = options = {}
                node = options
        else:
            node = node.setdefault(key, {}) if isinstance(node, dict) else None
            if node is None:
                raise UserError(f"{what} {path}: {key} is not a mapping")
    if not isinstance(node, dict):
        raise UserError(f"{what} {path}: cannot set a key there")
    node[keys[-1]] = value


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """`stages.1.epochs=1`: a path (see split_path) and a YAML value."""
    if "=" not in assignment:
        raise UserError(f"--set {assignment}: expected KEY.PATH=VALUE")
    path, value = assignment.split("=", 1)
    set_value(raw, path, yaml.safe_load(value))


def _describe_error(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    return f"{location}: {message}" if location else message


def load_recipe(path: str | Path, overrides: list[str] = (),
                data_root: str | None = None) -> Recipe:
    """Read and validate a recipe; the stages are checked against the registry too."""
    return recipe_from_raw(read_raw_recipe(path, overrides, data_root), path)


def read_raw_recipe(path: str | Path, overrides: list[str] = (),
                    data_root: str | None = None) -> dict[str, Any]:
    """The recipe file as a mapping, with `--set` overrides and `--data` applied."""
    raw = read_yaml_file(Path(path), "recipe")
    if not isinstance(raw, dict):
        raise UserError(f"recipe {path}: expected a mapping with 'checkpoint' and 'stages'")
    for assignment in overrides:
        apply_override(raw, assignment)
    if data_root is not None:
        raw.setdefault("data", {})
        raw["data"]["root"] = data_root
    return raw


def recipe_from_raw(raw: dict[str, Any], path: str | Path) -> Recipe:
    """Validate a recipe mapping (errors name `path`, the key and what was wanted)."""
    try:
        recipe = Recipe(**raw)
    except ValidationError as exc:
        raise UserError(f"recipe {path}: {_describe_error(exc.errors()[0])}") from None
    known = list_stages()
    for index, entry in enumerate(recipe.stages):
        if len(entry) != 1:
            raise UserError(f"recipe {path}: stages.{index}: expected one stage name with its "
                            f"options, e.g. '- prune: {{ratio: 0.3}}'")
        name, options = _stage_entry(entry)
        if name not in known:
            raise UserError(f"recipe {path}: stages.{index}: unknown stage {name!r} "
                            f"(known: {', '.join(known)})")
        try:
            create_stage(name, options)
        except ValidationError as exc:
            raise UserError(f"recipe {path}: stages.{index}.{name}."
                            f"{_describe_error(exc.errors()[0])}") from None
    if not Path(recipe.checkpoint).is_file():
        raise UserError(f"recipe {path}: checkpoint: file {recipe.checkpoint} not found")
    from compress.checkpoint import load_checkpoint

    model = load_checkpoint(recipe.checkpoint).model
    for index, (name, stage) in enumerate(zip(recipe.stage_names(), recipe.stage_objects())):
        try:
            stage.check(model)  # e.g. a rank larger than the layer, a pattern matching nothing
        except ValueError as exc:
            raise UserError(f"recipe {path}: stages.{index}.{name}: {exc}") from None
    return recipe


def recipe_to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)

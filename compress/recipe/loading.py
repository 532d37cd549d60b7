"""Recipe YAML -> validated, typed recipe. Errors name the file, the key and what was wanted."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from compress.errors import UserError
from compress.file_kinds import RECIPE, SEARCH, read_yaml_of_kind, type_name
from compress.recipe.overrides import apply_override
from compress.recipe.schema import InvalidStageOptions, Recipe, stage_entry
from compress.stages.registry import list_stages


def describe_error(error: dict[str, Any]) -> str:
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
    raw = read_yaml_of_kind(path, "recipe", (RECIPE, SEARCH), "checkpoint and stages")
    if data_root is not None and not isinstance(raw.get("data", {}), dict):
        raise UserError(f"recipe {path}: data: expected a mapping (root, split, batch_size, "
                        f"...), got {type_name(raw['data'])}")
    return with_overrides(raw, overrides, data_root)


def with_overrides(raw: dict[str, Any], overrides: Iterable[str] = (),
                   data_root: str | Path | None = None) -> dict[str, Any]:
    """`raw` (changed in place) with `--set` assignments and `--data` applied."""
    for assignment in overrides:
        apply_override(raw, assignment)
    if data_root is not None:
        raw.setdefault("data", {})
        raw["data"]["root"] = str(data_root)
    return raw


def recipe_from_raw(raw: dict[str, Any], path: str | Path) -> Recipe:
    """Validate a recipe mapping once (errors name `path`, the key and what was wanted):
    the sections, each stage's typed config, and each stage against the input model."""
    try:
        recipe = Recipe(**raw)
    except ValidationError as exc:
        raise UserError(f"recipe {path}: {describe_error(exc.errors()[0])}") from None
    _check_stage_names(recipe, path)
    try:
        recipe.stage_objects()  # the typed configs, built once here and kept
    except InvalidStageOptions as exc:
        # A model-level message starts with the option's name ("ratio must be ..."), so
        # "stages.0.prune." + it reads as the option's path.
        raise UserError(f"recipe {path}: stages.{exc.index}.{exc.name}."
                        f"{describe_error(exc.error.errors()[0])}") from None
    if not Path(recipe.checkpoint).is_file():
        raise UserError(f"recipe {path}: checkpoint: file {recipe.checkpoint} not found")
    model = recipe.input_checkpoint().model
    _check_teacher(recipe, path)
    for index, (name, stage) in enumerate(zip(recipe.stage_names(), recipe.stage_objects())):
        try:
            stage.check(model)  # e.g. a rank larger than the layer, a pattern matching nothing
        except ValueError as exc:
            raise UserError(f"recipe {path}: stages.{index}.{name}: {exc}") from None
    # Inputs as absolute paths: a run resumes the same from any working folder.
    recipe.checkpoint = os.path.abspath(recipe.checkpoint)
    if recipe.teacher is not None:
        recipe.teacher = os.path.abspath(recipe.teacher)
    if Path(recipe.data.root).is_dir():
        recipe.data.root = os.path.abspath(recipe.data.root)
    return recipe


def _check_teacher(recipe: Recipe, path: str | Path) -> None:
    """A teacher must exist and predict the input's classes in the same order."""
    if recipe.teacher is None:
        return
    if not Path(recipe.teacher).is_file():
        raise UserError(f"recipe {path}: teacher: file {recipe.teacher} not found")
    try:
        recipe.teacher_checkpoint()
    except UserError as exc:
        raise UserError(f"recipe {path}: teacher: {exc}") from None


def _check_stage_names(recipe: Recipe, path: str | Path) -> None:
    known = list_stages()
    for index, entry in enumerate(recipe.stages):
        if len(entry) != 1:
            raise UserError(f"recipe {path}: stages.{index}: expected one stage name with its "
                            f"options, e.g. '- prune: {{ratio: 0.3}}'")
        name = stage_entry(entry)[0]
        if name not in known:
            raise UserError(f"recipe {path}: stages.{index}: unknown stage {name!r} "
                            f"(known: {', '.join(known)})")


def resolved_recipe(recipe: Recipe) -> dict[str, Any]:
    """The recipe as data with every default spelled out, stage options included: what a
    run actually used."""
    data = recipe.model_dump(mode="json")
    data["stages"] = [{name: stage.config.model_dump(mode="json")}
                      for name, stage in zip(recipe.stage_names(), recipe.stage_objects())]
    return data


def recipe_to_yaml(recipe: Recipe) -> str:
    """resolved_recipe as YAML. Loading it gives the same recipe (tests/recipe: the round
    trip)."""
    return yaml.safe_dump(resolved_recipe(recipe), sort_keys=False)

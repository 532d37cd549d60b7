"""`--set` paths: `stages.1.epochs=1`, `stages.4.rank_map[model.0.0]=8`."""

from __future__ import annotations

import re
from typing import Any

import yaml

from compress.errors import UserError

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
    keys = _without_stage_name(raw, split_path(path))
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


def _without_stage_name(raw: dict[str, Any], keys: list[str]) -> list[str]:
    """`stages.0.prune.ratio` names the stage as the YAML does: the same as
    `stages.0.ratio`."""
    if len(keys) > 3 and keys[0] == "stages" and keys[1].isdigit():
        stages = raw.get("stages")
        if isinstance(stages, list) and int(keys[1]) < len(stages) and \
                isinstance(stages[int(keys[1])], dict) and keys[2] in stages[int(keys[1])]:
            return keys[:2] + keys[3:]
    return keys


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """`stages.1.epochs=1`: a path (see split_path) and a YAML value."""
    if "=" not in assignment:
        raise UserError(f"--set {assignment}: expected KEY.PATH=VALUE")
    path, value = assignment.split("=", 1)
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        raise UserError(f"--set {assignment}: the value is not valid YAML (quote it as a "
                        "string, e.g. --set 'key=\"text\"')") from None
    set_value(raw, path, parsed)

"""The YAML files compress reads, told apart by their keys, and the command that reads each:
a file given to another command is refused in one line that says what it is and which
command reads it (a `checkpoint: Field required` would not)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress.errors import UserError
from compress.fileio import read_yaml_file


@dataclass(frozen=True)
class FileKind:
    name: str
    marks: tuple[str, ...]  # a mapping with any of these keys is of this kind
    reader: str  # the command that reads it


# In order: the first kind whose mark a file has is its kind (a search file is a recipe with
# a search block; an architecture-search file names a data YAML and a reference model).
KINDS = (
    FileKind("an architecture-search file", ("architecture",), "compress arch-search"),
    FileKind("a recipe with a search block", ("search",), "compress search"),
    FileKind("a recipe", ("checkpoint", "stages"), "compress run"),
    FileKind("a data YAML", ("DATA_PATH", "IMG_SIZE", "EPOCHS", "BATCH_SIZE"),
             "compress train --data"),
    FileKind("a model YAML", ("backbone",), "compress train --model"),
)
ARCH_SEARCH, SEARCH, RECIPE, DATA, MODEL = (kind.name for kind in KINDS)


def kind_of(raw: Any) -> FileKind | None:
    """The kind of a parsed YAML file, or None where no kind's keys are in it."""
    if not isinstance(raw, dict):
        return None
    return next((kind for kind in KINDS if any(mark in raw for mark in kind.marks)), None)


def read_yaml_of_kind(path: str | Path, what: str, accepted: tuple[str, ...],
                      expected: str) -> dict[str, Any]:
    """The mapping in `path`, which must be one of the `accepted` kinds or of none (a key
    missing is then named by the reader's own checks). `what` names the file in errors
    ("recipe"); `expected` says what its mapping holds ("checkpoint and stages")."""
    raw = read_yaml_file(path, what)
    if not isinstance(raw, dict):
        raise UserError(f"{what} {path}: expected a mapping with {expected}, got "
                        f"{type_name(raw)}")
    kind = kind_of(raw)
    if kind is not None and kind.name not in accepted:
        mark = next(mark for mark in kind.marks if mark in raw)
        raise UserError(f"{what} {path}: this is {kind.name} (it has {mark}:), which "
                        f"{kind.reader} reads")
    return raw


def type_name(value: Any) -> str:
    """How an error names the type of a value the user wrote."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})" if len(value) <= 40 else "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__

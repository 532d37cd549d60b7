"""Reading the user's YAML files with errors that name the file, and atomic writes:
a file is replaced whole or not at all, so an interruption never leaves half of one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from compress.errors import UserError


def read_yaml_file(path: str | Path, what: str) -> Any:
    """Parse `path`; a missing file or invalid YAML is a one-line user error naming `what`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path}: file not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{what} {path}: not valid YAML ({exc.__class__.__name__})") from None


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary name beside `path` to write to; it replaces `path` only when the block
    ends without an error, so a crash or a full disk never leaves half a file (nor removes
    the previous one). The folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=1))

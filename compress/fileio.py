"""Reading the user's YAML files with errors that name the file, and atomic writes:
a file is replaced whole or not at all, so an interruption never leaves half of one.
"""

from __future__ import annotations

import json
import os
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


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

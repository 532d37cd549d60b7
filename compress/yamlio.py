"""Reading the user's YAML files (model, data, recipe) with errors that name the file."""

from __future__ import annotations

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

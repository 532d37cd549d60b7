"""`compress predict`: the class of every image of a folder, written as CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from compress.errors import UserError

OUTPUT_FORMATS = ("csv", "json")


def format_predictions(files: list[Path], root: Path, labels: np.ndarray, classes: list[str],
                       output_format: str) -> str:
    """CSV rows `file,class`, or the competition's JSON object {file: class}; files are
    named relative to the images folder."""
    names = [f.relative_to(root).as_posix() for f in files]
    predicted = [classes[i] for i in labels]
    if output_format == "json":
        return json.dumps(dict(zip(names, predicted)), indent=0)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "class"])
    writer.writerows(zip(names, predicted))
    return buffer.getvalue()


def model_classes(model: Any, classes_option: str | None) -> list[str]:
    """Class names: --classes, else those stored in the checkpoint or ONNX file."""
    classes = [c.strip() for c in classes_option.split(",") if c.strip()] \
        if classes_option else model.classes
    if not classes:
        raise UserError(f"{model.path} stores no class names: give --classes a,b,c")
    return classes

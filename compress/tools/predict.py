"""`compress predict`: the class of every image of a folder, written as CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from compress.errors import UserError
from compress.fileio import check_writable, write_atomic
from compress.measure.end_to_end import Predictions, list_images, predict_files
from compress.measure.machine import usable_cores
from compress.measure.runtime import RunnerOptions
from compress.measure.threads import torch_threads
from compress.tools.bench import open_model

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


@dataclass(frozen=True)
class PredictOptions:
    """How `compress predict` runs the model and writes its answers."""

    output_format: str = "csv"  # see OUTPUT_FORMATS
    runner: RunnerOptions = RunnerOptions(provider="cpu")  # threads: default usable cores
    batch_size: int = 1  # images per model call; 1 is the competition's setting
    workers: int | None = None  # decoding processes; default: usable cores
    classes: str | None = None  # comma-separated names, for files that store none


def predict_folder(model_path: str, images_dir: str | Path, out: str | Path,
                   options: PredictOptions = PredictOptions(),
                   note: Callable[[str], None] = lambda line: None) -> Predictions:
    """Predict every image under `images_dir` and write `out` atomically (a failed run keeps
    the old file). `note` gets the progress lines. Returns the labels and the end-to-end,
    model and wait times."""
    out_path = check_writable(out)  # before any work
    files = list_images(images_dir)
    threads = options.runner.threads or usable_cores()
    opened = open_model(model_path, replace(options.runner, threads=threads))
    batch_size = options.batch_size
    opened.check_batch(batch_size)
    if opened.note:
        note(f"note: {opened.note}")
    class_names = model_classes(opened, options.classes)
    workers = usable_cores() if options.workers is None else options.workers
    note(f"predicting {len(files)} images with {model_path} "
         f"({opened.runner.provider}, batch {batch_size}, {workers} workers)")
    with torch_threads(threads):  # a checkpoint's; ONNX runtimes have their own
        result = predict_files(opened.runner, files, opened.input_size, batch_size, workers)
    if int(result.labels.max()) >= len(class_names):
        raise UserError(f"{model_path} predicts {int(result.labels.max()) + 1}+ classes but "
                        f"{len(class_names)} class names were given")
    write_atomic(out_path, format_predictions(files, Path(images_dir), result.labels,
                                              class_names, options.output_format))
    return result


def summary_line(out: str | Path, result: Predictions) -> str:
    return (f"wrote {out}: {len(result.labels)} images in {result.seconds:.2f} s "
            f"({result.images_per_s:.1f} images/s end to end; the model took "
            f"{result.model_seconds:.2f} s, {result.model_seconds / result.seconds:.0%}, and "
            f"waited {result.wait_seconds:.2f} s for decoded images: bound by "
            f"{result.bound_by})")

"""Predict every image of a folder and time the whole thing: the competition's "submit time".

Decoding and preprocessing (square-pad, resize, normalise) run in DataLoader worker
processes that work ahead of the model, so on a fast model the data pipeline overlaps
inference instead of adding to it. The wall time covers everything from opening the
images to the last prediction; the model's share of it is reported too.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from compress.data.folders import IMAGE_EXTENSIONS, read_image
from compress.data.transforms import eval_transform
from compress.errors import UserError
from compress.measure.threads import torch_threads
from compress.measure.torch_runner import TorchRunner


def list_images(folder: str | Path) -> list[Path]:
    """Image files under `folder` (recursively), in a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"images folder {folder}: not found")
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise UserError(f"images folder {folder}: no images ("
                        + ", ".join(IMAGE_EXTENSIONS) + ")")
    return files


class ImageFiles(Dataset):
    """Preprocessed images by index; an unreadable file yields its error instead of raising,
    so the main process can name it (an exception in a worker would arrive wrapped)."""

    def __init__(self, files: list[Path], input_size: int):
        self.files = files
        self.transform = eval_transform(input_size)
        self.input_size = input_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        try:
            return self.transform(read_image(self.files[index])), ""
        except UserError as exc:
            return torch.zeros(3, self.input_size, self.input_size), str(exc)


@dataclass
class Predictions:
    labels: np.ndarray  # class index per file, in file order
    seconds: float  # wall time: decoding, preprocessing and inference
    model_seconds: float  # time spent inside the model
    # Time the model waited for decoded images after the first chunk (whose wait is the
    # workers' start, paid once whatever bounds the rest).
    wait_seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return len(self.labels) / self.seconds

    @property
    def bound_by(self) -> str:
        """What limits the images per second: decoding (the model waited longer for images
        than it ran) or the model."""
        return "decoding" if self.wait_seconds > self.model_seconds else "the model"


LOADER_CHUNK = 16  # images per worker hand-over: one inter-process transfer per image costs ms


def predict_files(runner: Any, files: list[Path], input_size: int, batch_size: int = 1,
                  workers: int = 2) -> Predictions:
    """Class indices for `files` with `runner` (see compress.measure.runners).

    Workers hand over chunks of at least LOADER_CHUNK images, which the model then takes
    `batch_size` at a time: decoding in the workers overlaps inference in this process
    (on a GPU the runner copies each batch from pinned memory without blocking). Where the
    model is not torch on this CPU, this process's torch runs single-threaded meanwhile, so
    that its thread pool does not fight the model's for the cores. The time spent waiting
    for the workers is counted apart from the model's, to say which of the two bounds it."""
    images_dataset = ImageFiles(files, input_size)  # imports torchvision: not timed
    started = time.perf_counter()
    chunk = max(batch_size, LOADER_CHUNK)
    loader = DataLoader(images_dataset, batch_size=chunk, shuffle=False,
                        num_workers=workers, prefetch_factor=4 if workers else None)
    labels, model_seconds, wait_seconds = [], 0.0, 0.0
    timed_in_torch_on_cpu = isinstance(runner, TorchRunner) and runner.device.type == "cpu"
    with torch_threads(None if timed_in_torch_on_cpu else 1):
        chunks = iter(loader)
        for index in itertools.count():
            waited = time.perf_counter()
            images, errors = next(chunks, (None, None))
            if index:
                wait_seconds += time.perf_counter() - waited
            if images is None:
                break
            failed = next((e for e in errors if e), None)
            if failed:
                raise UserError(failed)
            array = images.numpy()
            for first in range(0, len(array), batch_size):
                prepared = runner.prepare(array[first:first + batch_size])
                start = time.perf_counter()
                logits = runner(prepared)
                model_seconds += time.perf_counter() - start
                if isinstance(logits, torch.Tensor):
                    logits = logits.float().numpy()
                labels.append(logits.argmax(1))
    return Predictions(np.concatenate(labels), time.perf_counter() - started, model_seconds,
                       wait_seconds)

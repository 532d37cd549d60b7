"""Image folders: ROOT/{train,val,test}/<class>/*.jpg (torchvision ImageFolder layout),
classes in sorted order; unreadable images and empty classes are user errors.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from compress.data.images import IMAGE_EXTENSIONS, read_image
from compress.errors import UserError

log = logging.getLogger(__name__)
# Lines a user should see while data is prepared (which cache and why, decode progress);
# the command line shows them on stderr.
progress_log = logging.getLogger("compress.progress")
PARALLEL_DECODE_FROM = 256  # images; fewer are decoded in the calling process, silently



def find_classes(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise UserError(f"data folder {split_dir}: not found")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise UserError(f"data folder {split_dir}: no class folders "
                        f"(expected {split_dir}/<class>/*.jpg)")
    return classes


class ImageFolderDataset(Dataset):
    """ROOT/<class>/<image> with a fixed class list, read from the files; `decoded` gives
    the same images read from the shared cache of decoded images."""

    def __init__(self, split_dir: str | Path, classes: list[str] | None = None,
                 transform: Callable | None = None):
        split_dir = Path(split_dir)
        found = find_classes(split_dir)
        if classes is not None and found != list(classes):
            raise UserError(f"data folder {split_dir}: classes {found} differ from the "
                            f"model's {list(classes)}")
        self.split_dir, self.classes, self.transform = split_dir, found, transform
        self.samples: list[tuple[Path, int]] = []
        for label, name in enumerate(found):
            files = sorted(p for p in (split_dir / name).iterdir()
                           if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise UserError(f"data folder {split_dir / name}: no images")
            self.samples += [(p, label) for p in files]
        self._cache, self._rows, self._cache_mode = None, list(range(len(self.samples))), "auto"

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]

    @property
    def reads_decoded(self) -> bool:
        """Its images come from the cache of decoded images, not from their files."""
        return self._cache is not None

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        image = self._cache[self._rows[index]] if self._cache is not None else read_image(path)
        return (self.transform(image) if self.transform else image), label

    def subset(self, keep: Callable[[Path], bool]) -> "ImageFolderDataset":
        """The images whose path `keep` accepts (and their decoded cache), as a dataset of
        the same kind."""
        view = copy.copy(self)
        chosen = [i for i, (path, _) in enumerate(self.samples) if keep(path)]
        view.samples = [self.samples[i] for i in chosen]
        view._rows = [self._rows[i] for i in chosen]
        return view

    def decoded(self, size: int, mode: str = "auto") -> "ImageFolderDataset":
        """The same images read from the cache of decoded images at `size` px (built unless
        it exists; `mode` as in `compress.data.cache.choose_mode`), or streamed from the
        files where that is the choice. The transform must start with SquarePad and a
        Resize to `size`, which then change nothing."""
        view = copy.copy(self)
        view._cache = decoded_cache([p for p, _ in self.samples], size, mode)
        view._rows, view._cache_mode = list(range(len(self.samples))), mode
        return view

    def with_transform(self, transform: Callable | None, size: int | None = None
                       ) -> "ImageFolderDataset":
        """The same images under another transform, e.g. the training split through the test
        transform for calibration; with a `size` other than the cache's, decoded again at
        that size (a resize stage)."""
        view = copy.copy(self)
        view.transform = transform
        if self._cache is not None and size not in (None, self._cache.size):
            view = view.decoded(size, self._cache_mode)  # rows for this view's images only
        return view


def decoded_cache(files: list[Path], size: int, mode: str = "auto"):
    """The decoded images of `files` at `size`, where `choose_mode` puts them (None: stream
    from the files); says which and why, and the decode's progress."""
    from compress.data.cache import SHARED_MEMORY, build_cache, choose_mode, requested_mode
    from compress.fileio import cache_dir

    choice = choose_mode(len(files), size, cache_dir() / "images", requested_mode(mode))
    # A few hundred images decode in about a second: no process pool (it takes about that
    # long to start) and nothing to report.
    large = len(files) >= PARALLEL_DECODE_FROM
    if large:
        progress_log.info("image cache: %s (%s)", choice.mode, choice.reason)
    if choice.mode == "stream":
        return None
    ram = choice.mode == "ram"
    folder = SHARED_MEMORY / "compress" if ram else cache_dir() / "images"
    workers = min(4, os.cpu_count() or 1) if large else 0
    progress = DecodeProgress(f"decoding {len(files):,} images in {max(workers, 1)} "
                              "process(es)") if large else (lambda done, total: None)
    return build_cache(files, size, folder, read_image, workers=workers, progress=progress,
                       remove_at_exit=ram)


class DecodeProgress:
    """A progress bar with an ETA on a terminal; elsewhere (a log file) a line every
    PERIOD_S seconds and at the end."""

    PERIOD_S = 15.0

    def __init__(self, description: str):
        self.description = description
        self.started = self.last_line = time.monotonic()
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if done == 1 and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.description, unit="img", leave=False,
                            dynamic_ncols=True, mininterval=0.5)
        if self.bar is not None:
            self.bar.update(1)
            if done == total:
                self.bar.close()
        now = time.monotonic()
        if done == total or (self.bar is None and now - self.last_line >= self.PERIOD_S):
            self.last_line = now
            elapsed = now - self.started
            left = elapsed / done * (total - done)
            progress_log.info("%s: %s/%s (%.0f %%), %.0f s%s", self.description, f"{done:,}",
                              f"{total:,}", 100 * done / total, elapsed,
                              f", about {left:.0f} s left" if done < total else "")


def split_folder(root: str | Path, split: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder {root}: " + ("is a file, not a folder" if root.exists()
                                                   else "not found"))
    return root / split


MIN_LAST_BATCH_SHARE = 0.25  # a smaller last training batch is dropped (make_loader)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int = 0,
                seed: int = 0, sampler=None, pin_memory: bool = False) -> DataLoader:
    """`sampler` (a DistributedSampler under torchrun) replaces shuffling; `pin_memory`
    (for a CUDA device): batches arrive in page-locked memory and copy without blocking."""
    generator = torch.Generator().manual_seed(seed)
    training = shuffle or sampler is not None
    # Evaluating images already decoded (a row read and the test transform: a fraction of a
    # millisecond each) is no work for worker processes, and forking them from a process
    # that has just trained copies much of its memory: at the first evaluation of a
    # one-epoch fine-tune on 20,000 images two val workers held 0.7 GiB each.
    in_process = not training and getattr(dataset, "reads_decoded", False)
    workers = 0 if in_process else min(num_workers, os.cpu_count() or 1)
    # A small last training batch wrecks BatchNorm after global pooling (the baseline's 1x1
    # head conv): one image raises an error; two normalise every channel to +-1 and feed the
    # running statistics a two-sample variance. TrashNet train less its 10 % calibration
    # split is 1474 images, 23 batches of 64 and one of 2: the default recipe's first
    # fine-tune of the shipped baseline collapsed (val macro F1 0.42 -> 0.08 -> 0.37 over 8
    # epochs; with the 2 dropped: 0.43 -> 0.72 -> 0.76). So a last batch under a quarter of
    # the batch is dropped (each epoch other images: the order is shuffled).
    shown = len(sampler) if sampler is not None else len(dataset)
    remainder = shown % batch_size
    drop_last = training and (remainder == 1 or (
        shown > batch_size and remainder < batch_size * MIN_LAST_BATCH_SHARE))
    # Training workers start anew each epoch, seeded from `generator` (which the engine
    # re-seeds per epoch): persistent ones would carry their random state over from earlier
    # epochs, so a resumed run would draw other augmentations than an uninterrupted one.
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None,
                      sampler=sampler, num_workers=workers, generator=generator,
                      persistent_workers=workers > 0 and not training, drop_last=drop_last,
                      pin_memory=pin_memory)

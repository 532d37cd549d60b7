"""Decoded images at the size the model needs, made once per machine and shared.

Each image is decoded, square-padded and resized to SIZE x SIZE once (the deterministic
start of both transforms), and stored as a row of one uint8 array (N, SIZE, SIZE, 3) in a
memory-mapped `.npy` file: in shared memory (/dev/shm) when it fits a share of the memory
available, else on disk when it fits there, else nothing is cached and images stream from
their files. Every process that opens the same images at the same size (loader workers
under any start method, torchrun ranks, search trials) maps the same file: one copy per
machine. The transforms then run unchanged on the stored image: square-padding a square
image and resizing it to its own size are identities in Pillow, so the tensors equal
today's (tests/data/test_cache.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from PIL import Image

from compress.errors import UserError

Mode = Literal["ram", "disk", "stream"]
FORMAT_VERSION = 1  # bump when what a row holds changes
SHARED_MEMORY = Path("/dev/shm")


@dataclass(frozen=True)
class CacheChoice:
    mode: Mode
    bytes_needed: int
    reason: str


def bytes_needed(count: int, size: int) -> int:
    return count * size * size * 3


def memory_available() -> int:
    """MemAvailable of /proc/meminfo (Linux), else physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def choose_mode(count: int, size: int, disk_dir: Path, requested: str = "auto",
                memory_share: float = 0.5) -> CacheChoice:
    """Where `count` images of `size` px go: RAM when they fit `memory_share` of the memory
    available (and /dev/shm exists), else disk when they fit its free space, else stream.
    `requested` other than auto is taken as given."""
    needed = bytes_needed(count, size)
    gib = needed / 2**30
    if requested != "auto":
        return CacheChoice(requested, needed, f"asked for ({gib:.2f} GiB)")
    budget = memory_share * memory_available()
    if SHARED_MEMORY.is_dir() and needed <= min(budget, shutil.disk_usage(SHARED_MEMORY).free):
        return CacheChoice("ram", needed, f"{gib:.2f} GiB fits {memory_share:.0%} of the "
                           f"{memory_available() / 2**30:.1f} GiB available")
    disk_dir.mkdir(parents=True, exist_ok=True)
    if needed <= 0.9 * shutil.disk_usage(disk_dir).free:
        return CacheChoice("disk", needed, f"{gib:.2f} GiB is over {memory_share:.0%} of the "
                           f"memory available; fits on disk at {disk_dir}")
    return CacheChoice("stream", needed, f"{gib:.2f} GiB fits neither memory nor {disk_dir}")


def cache_key(files: list[Path], size: int) -> str:
    """Changes with any file's path, length or modification time, and with the size."""
    digest = hashlib.sha256(f"v{FORMAT_VERSION} {size}".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"\n{path.resolve()} {stat.st_size} {stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


class DecodedImages:
    """Rows of a cache file as PIL images; pickles as its path (workers map the file)."""

    def __init__(self, path: Path, size: int):
        self.path, self.size = path, size
        self._rows: np.ndarray | None = None

    def __getstate__(self):
        return {"path": self.path, "size": self.size, "_rows": None}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def rows(self) -> np.ndarray:
        if self._rows is None:
            self._rows = np.load(self.path, mmap_mode="r")
        return self._rows

    def __getitem__(self, index: int) -> Image.Image:
        return Image.fromarray(np.asarray(self.rows[index]))


def _row(job: tuple[Path, int, Callable[[Path], Image.Image]]) -> np.ndarray:
    """One image as stored: decoded, square-padded, resized as T.Resize((size, size)) does."""
    from compress.data.transforms import SquarePad

    path, size, read = job
    return np.asarray(SquarePad()(read(path)).resize((size, size), Image.Resampling.BILINEAR))


def build_cache(files: list[Path], size: int, folder: Path,
                read: Callable[[Path], Image.Image], workers: int = 0,
                progress: Callable[[int, int], None] = lambda done, total: None
                ) -> DecodedImages:
    """The cache file of `files` at `size` in `folder`, built unless it exists (decoded by
    `workers` processes, 0: in this one); a process that finds another building it waits for
    it (a lock file) instead of decoding again."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"images-{cache_key(files, size)}.npy"
    with open(folder / f"{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            partial = path.with_suffix(".partial.npy")
            try:
                rows = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8,
                                                 shape=(len(files), size, size, 3))
            except OSError as exc:
                raise UserError(f"image cache {partial}: cannot be written ({exc})") from None
            jobs = [(file, size, read) for file in files]
            with _pool(workers) as pool:
                for index, row in enumerate(pool.imap(_row, jobs, chunksize=16)
                                            if pool else map(_row, jobs)):
                    rows[index] = row
                    progress(index + 1, len(files))
            rows.flush()
            del rows
            os.replace(partial, path)
    return DecodedImages(path, size)


@contextmanager
def _pool(workers: int):
    """A process pool of `workers` (None when 0); a worker's error reaches the caller."""
    if workers <= 0:
        yield None
        return
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield pool


def unreadable_headers(files: list[Path]) -> list[tuple[Path, str]]:
    """Files whose header Pillow cannot read (not an image, empty, cut before the size):
    found in milliseconds an image, before anything is decoded in full."""
    from PIL import UnidentifiedImageError

    bad = []
    for path in files:
        try:
            with Image.open(path) as image:
                image.size  # noqa: B018 (parsed from the header)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
            bad.append((path, exc.__class__.__name__))
    return bad

"""Decoded images at the size the model needs, made once per machine and shared.

Each image is decoded, square-padded and resized to SIZE x SIZE once (the deterministic
start of both transforms), and stored as a row of one uint8 array (N, SIZE, SIZE, 3) in a
`.npy` file. Every process that opens the same images at the same size (loader workers
under any start method, torchrun ranks, search trials) reads the same file: one copy per
machine, in the kernel's page cache (DecodedImages reads rows without mapping them). The transforms then run unchanged on the stored image:
square-padding a square image and resizing it to its own size are identities in Pillow, so
the tensors equal decoding the file each time (tests/data/test_cache.py).

Where the file goes (`choose_mode`, `auto`): on disk under the cache folder when it fits
there. The kernel's page cache then holds it in memory as long as memory allows (the
reason says whether it fits the memory share), and it outlives the run, so the next run
on the same files starts without decoding. In shared memory (/dev/shm, `ram`) only when the
disk has no room but memory has: removed when the process that built it ends, since files
there hold memory until reboot. Else images stream from their files (`stream`), decoded in
the loader's worker processes every epoch.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from PIL import Image

from compress.errors import UserError
from compress.fileio import LockBusy, file_lock

Mode = Literal["ram", "disk", "stream"]
MODES = ("auto", "ram", "disk", "stream")
MODE_ENV = "COMPRESS_IMAGE_CACHE"  # the mode where neither the command nor the YAML sets one
MEMORY_SHARE_ENV = "COMPRESS_CACHE_MEMORY_SHARE"  # share of MemAvailable a cache may take
DEFAULT_MEMORY_SHARE = 0.5
FORMAT_VERSION = 1  # bump when what a row holds changes
SHARED_MEMORY = Path("/dev/shm")
STALE_DAYS = 14  # cache files on disk unused this long are removed when another is built


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


def requested_mode(configured: str = "auto") -> str:
    """The mode asked for: `configured` (a command option or a YAML key), else
    $COMPRESS_IMAGE_CACHE, else auto."""
    if configured != "auto":
        mode, source = configured, "image cache mode"
    else:
        mode, source = os.environ.get(MODE_ENV, "auto"), f"${MODE_ENV}"
    if mode not in MODES:
        raise UserError(f"{source} {mode!r}: expected one of {', '.join(MODES)}")
    return mode


def memory_share() -> float:
    raw = os.environ.get(MEMORY_SHARE_ENV, str(DEFAULT_MEMORY_SHARE))
    try:
        share = float(raw)
    except ValueError:
        share = -1.0
    if not 0.0 < share <= 1.0:
        raise UserError(f"{MEMORY_SHARE_ENV}={raw!r}: expected a share in (0, 1]")
    return share


def choose_mode(count: int, size: int, disk_dir: Path, requested: str = "auto",
                share: float | None = None) -> CacheChoice:
    """Where `count` images of `size` px go (see the module's text); a `requested` mode
    other than auto is taken as given."""
    needed = bytes_needed(count, size)
    gib = needed / 2**30
    if requested == "ram" and not SHARED_MEMORY.is_dir():
        raise UserError(f"image cache ram: this system has no {SHARED_MEMORY}; use disk")
    if requested != "auto":
        return CacheChoice(requested, needed, f"asked for; {count:,} images at {size} px take "
                           f"{gib:.2f} GiB")
    share = memory_share() if share is None else share
    available = memory_available()
    in_memory = needed <= share * available
    memory_note = (f"{'within' if in_memory else 'over'} {share:.0%} of the "
                   f"{available / 2**30:.1f} GiB of memory available")
    disk_dir.mkdir(parents=True, exist_ok=True)
    if needed <= 0.9 * shutil.disk_usage(disk_dir).free:
        then = ("so it stays in the page cache" if in_memory
                else "so epochs read it back from disk")
        return CacheChoice("disk", needed, f"{count:,} images at {size} px take {gib:.2f} GiB, "
                           f"{memory_note}, {then}; kept at {disk_dir} for the next run")
    if in_memory and SHARED_MEMORY.is_dir() and needed <= shutil.disk_usage(SHARED_MEMORY).free:
        return CacheChoice("ram", needed, f"{gib:.2f} GiB do not fit the free space of "
                           f"{disk_dir} and are {memory_note}: held in {SHARED_MEMORY} for "
                           "this run")
    return CacheChoice("stream", needed, f"{gib:.2f} GiB fit neither the free space of "
                       f"{disk_dir} nor {share:.0%} of the {available / 2**30:.1f} GiB of "
                       "memory available: each image is decoded every epoch")


def cache_key(files: list[Path], size: int) -> str:
    """Changes with any file's path, length or modification time, and with the size."""
    digest = hashlib.sha256(f"v{FORMAT_VERSION} {size}".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"\n{path.resolve()} {stat.st_size} {stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


class DecodedImages:
    """Rows of a cache file as PIL images; pickles as its path (each process opens the file).

    A row is read with os.pread, not through a memory map: the file's pages stay in the
    kernel's page cache, shared by every process and reclaimable, and count in no process's
    memory (a map puts every page a process touched in its resident set, and so in its
    PSS and the OOM killer's count: an epoch over a 0.92 GiB cache added 0.92 GiB to the
    loader's summed PSS). Where there is no os.pread (Windows) the rows are mapped."""

    def __init__(self, path: Path, size: int):
        self.path, self.size = path, size
        self._rows: np.ndarray | None = None
        self._file: tuple[int, int, int] | None = None  # descriptor, data offset, rows

    def __getstate__(self):
        return {"path": self.path, "size": self.size, "_rows": None, "_file": None}

    def __len__(self) -> int:
        return self._opened()[2]

    @property
    def rows(self) -> np.ndarray:
        """The whole file as a read-only memory map (for checks and whole-array reads)."""
        if self._rows is None:
            self._rows = np.load(self.path, mmap_mode="r")
        return self._rows

    def _opened(self) -> tuple[int, int, int]:
        if self._file is None:
            with open(self.path, "rb") as stream:
                version = np.lib.format.read_magic(stream)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                    else np.lib.format.read_array_header_2_0
                shape, _, _ = read_header(stream)
                offset = stream.tell()
            self._file = (os.open(self.path, os.O_RDONLY), offset, shape[0])
        return self._file

    def __getitem__(self, index: int) -> Image.Image:
        if not hasattr(os, "pread"):
            return Image.fromarray(np.asarray(self.rows[index]))
        descriptor, offset, count = self._opened()
        if not -count <= index < count:
            raise IndexError(f"row {index} of {count} in {self.path}")
        row_bytes = self.size * self.size * 3
        data = os.pread(descriptor, row_bytes, offset + (index % count) * row_bytes)
        return Image.fromarray(np.frombuffer(data, np.uint8).reshape(self.size, self.size, 3))

    def __del__(self) -> None:
        if getattr(self, "_file", None) is not None:
            os.close(self._file[0])


def _row(job: tuple[Path, int, Callable[[Path], Image.Image]]) -> np.ndarray:
    """One image as stored: decoded, square-padded, resized as T.Resize((size, size)) does."""
    from compress.data.images import SquarePad

    path, size, read = job
    return np.asarray(SquarePad()(read(path)).resize((size, size), Image.Resampling.BILINEAR))


def build_cache(files: list[Path], size: int, folder: Path,
                read: Callable[[Path], Image.Image], workers: int = 0,
                progress: Callable[[int, int], None] = lambda done, total: None,
                remove_at_exit: bool = False) -> DecodedImages:
    """The cache file of `files` at `size` in `folder`, built unless it exists (decoded by
    `workers` processes, 0: in this one); a process that finds another building it waits for
    it (a lock file) instead of decoding again. `remove_at_exit`: the file is deleted when
    this process ends if this process built it (processes that opened it keep reading it)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"images-{cache_key(files, size)}.npy"
    with file_lock(_lock_of(path)):
        if path.exists():
            os.utime(path)  # in use: not stale
        else:
            _remove_stale(folder)
            partial = path.with_suffix(".partial.npy")
            try:
                rows = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8,
                                                 shape=(len(files), size, size, 3))
                # Reserve the blocks now: a full disk under a mapped file is a SIGBUS later.
                if hasattr(os, "posix_fallocate"):  # not on macOS
                    with open(partial, "r+b") as reserved:
                        os.posix_fallocate(reserved.fileno(), 0, os.path.getsize(partial))
            except OSError as exc:
                partial.unlink(missing_ok=True)
                raise UserError(f"image cache {partial}: cannot be written ({exc}); choose "
                                "another mode with --cache or COMPRESS_CACHE_DIR") from None
            jobs = [(file, size, read) for file in files]
            try:
                with _pool(workers) as pool:
                    for index, row in enumerate(pool.imap(_row, jobs, chunksize=16)
                                                if pool else map(_row, jobs)):
                        rows[index] = row
                        progress(index + 1, len(files))
                rows.flush()
            except BaseException:
                partial.unlink(missing_ok=True)  # a file cut short must not look built
                raise
            del rows
            os.replace(partial, path)
            if remove_at_exit:
                atexit.register(path.unlink, missing_ok=True)
    return DecodedImages(path, size)


def _remove_stale(folder: Path) -> None:
    """Cache files nobody used for STALE_DAYS: each run on other files or at another size
    makes a new one, and nothing else would ever remove them. Each is removed under its own
    lock, taken without waiting: a file another process is building or opening is skipped
    (its lock file stays with its holder), and taking a lock removes the lock file that a
    killed process left behind."""
    limit = time.time() - STALE_DAYS * 86400
    for old in folder.glob("images-*.npy"):
        try:
            if old.stat().st_mtime >= limit:
                continue
            with file_lock(_lock_of(old), wait=False):
                if old.stat().st_mtime < limit:  # not opened while the lock was taken
                    old.unlink()
        except (LockBusy, OSError):
            pass  # another process holds, removed or is using it


def _lock_of(path: Path) -> Path:
    """The lock file of a cache file, also of its `.partial.npy` while it is being built."""
    return path.with_name(path.name.replace(".partial.npy", ".npy") + ".lock")


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

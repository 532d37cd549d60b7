"""Reading the user's YAML files with errors that name the file, atomic writes and file
locks: a file is replaced whole or not at all, so an interruption or a second writer never
leaves half of one, and a file that several processes update (a shared cache, a run folder)
is changed by one at a time under its lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from compress.errors import UserError

CACHE_ENV = "COMPRESS_CACHE_DIR"


def cache_dir() -> Path:
    """Where measurements and decoded images are kept between runs: $COMPRESS_CACHE_DIR,
    else $XDG_CACHE_HOME/compress, else ~/.cache/compress."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "compress"


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """PyYAML's safe loader (on libyaml's parser where PyYAML was built with it: 2.2 ms
    against 9.1 ms for recipes/arch_mnv3.yaml), except that a key given twice in one mapping
    is an error: by default the second silently wins (`seed: 1` then `seed: 2`)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (line {key_node.start_mark.line + 1})",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml_file(path: str | Path, what: str) -> Any:
    """Parse `path`; a missing file, a file that is not UTF-8 text, invalid YAML or a key
    given twice is a one-line user error naming `what`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path}: " + ("is a folder, not a file" if path.is_dir()
                                              else "file not found"))
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError:
        raise UserError(f"{what} {path}: not UTF-8 text") from None
    except yaml.constructor.ConstructorError as exc:
        raise UserError(f"{what} {path}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{what} {path}: not valid YAML ({exc.__class__.__name__})") from None


def check_folder_possible(folder: str | Path, what: str, named: str | Path | None = None
                          ) -> None:
    """A one-line user error when a file stands where `folder` or one of its parents
    should be (mkdir would fail with a bare "File exists" or "Not a directory")."""
    for candidate in (Path(folder), *Path(folder).parents):
        if candidate.exists() and not candidate.is_dir():
            raise UserError(f"{what} {named or folder}: {candidate} is a file, not a folder")


def check_writable(path: str | Path, what: str = "--out") -> Path:
    """Fail before any work when `path` cannot be written (its folder is a file, no
    permission, a read-only or full disk): a one-line user error naming it. Creates
    nothing: the probe file goes into the nearest folder that exists and is removed."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path}: is a folder, give a file name")
    check_folder_possible(path.parent, what, path)
    existing = next(p for p in (path.parent.absolute(), *path.parent.absolute().parents)
                    if p.is_dir())
    probe = existing / f".{path.name}.{os.getpid()}.probe"
    try:
        probe.write_bytes(b"")
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot be written ({exc.strerror or exc})") from None
    finally:
        probe.unlink(missing_ok=True)
    return path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary name beside `path` to write to; it replaces `path` only when the block
    ends without an error, so a crash or a full disk never leaves half a file (nor removes
    the previous one), and of two processes writing it at once, readers see one version
    whole: the last to finish wins. The folder is created. Files that a library writes to a
    path it is given (onnx.save, torch.onnx.export, safetensors) are written to this name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own per writer: two processes writing the same file never share one.
    # Not created here (as mkstemp would, mode 0600): the writer creates it with the umask.
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is not None and Path(exc.filename) == tmp:  # name the user's file
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=1))


def copy_atomic(source: str | Path, path: str | Path) -> None:
    """`source` copied to `path`, which is replaced whole (see atomic_path)."""
    with atomic_path(path) as tmp:
        shutil.copyfile(source, tmp)


class LockBusy(Exception):
    """`path` is locked by another process (`owner`: its pid, where the lock file names
    it)."""

    def __init__(self, path: Path, owner: int | None):
        super().__init__(f"{path} is locked by " + (f"process {owner}" if owner is not None
                                                   else "another process"))
        self.path, self.owner = path, owner


@contextmanager
def file_lock(path: str | Path, wait: bool = True) -> Iterator[None]:
    """Hold the lock file `path` for this process: another process entering it waits
    (`wait`) or gets LockBusy. The kernel releases it when a process dies however it
    ends (an advisory flock), so a killed holder never blocks anyone, and no process ever
    decides from the file's content that a lock is stale.

    The file holds the holder's pid, for messages, and is removed on release while still
    held; so a process that opened it before then checks once it has the lock that the name
    still leads to the file it locked, and starts over if not (else two processes could
    each hold a different file under the same name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(descriptor)
            raise LockBusy(path, lock_owner(path)) from None
        except BaseException:
            os.close(descriptor)
            raise
        if _names(path, descriptor):
            break
        os.close(descriptor)  # removed or replaced by its holder meanwhile: start over
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        yield
    finally:
        if _names(path, descriptor):  # not if the folder was removed and made anew
            path.unlink(missing_ok=True)
        os.close(descriptor)


def lock_owner(path: str | Path) -> int | None:
    """The pid a lock file names; None where it is missing, empty or being written."""
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def _names(path: Path, descriptor: int) -> bool:
    """Whether `path` leads to the open file `descriptor`."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(descriptor)
    return (found.st_dev, found.st_ino) == (mine.st_dev, mine.st_ino)

"""Removing stale image caches never touches a cache, or a lock file, that another live
process holds."""

from __future__ import annotations

import os
import time

from racing import holding

from compress.data.cache import STALE_DAYS, _remove_stale


def _stale(path):
    path.write_bytes(b"rows")
    old = time.time() - (STALE_DAYS + 1) * 86400
    os.utime(path, (old, old))
    return path


def test_a_stale_cache_another_process_holds_is_kept_with_its_lock(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    held, free = _stale(folder / "images-held.npy"), _stale(folder / "images-free.npy")
    lock = folder / "images-held.npy.lock"
    with holding("from compress.fileio import file_lock", f"file_lock({str(lock)!r})",
                 tmp_path):
        _remove_stale(folder)
        assert held.exists() and lock.exists() and not free.exists()
    assert not lock.exists()  # removed by its holder on release
    _remove_stale(folder)
    assert not held.exists()


def test_a_killed_builders_partial_file_and_lock_are_removed_once_stale(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    partial = _stale(folder / "images-cut.partial.npy")
    lock = folder / "images-cut.npy.lock"
    lock.write_text("999999999\n")  # a builder killed before it could remove it
    _remove_stale(folder)
    assert not partial.exists() and not lock.exists()

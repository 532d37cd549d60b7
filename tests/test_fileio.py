"""Atomic writes and file locks hold between real processes: an update made under the lock
is never lost, a file two processes write at once is always one whole version, and a lock
held by a live process is never taken."""

from __future__ import annotations

import errno
import json
import os

import pytest
from racing import ROUNDS, Race, holding

from compress.fileio import LockBusy, atomic_path, file_lock, lock_owner, write_atomic

INCREMENT = """
import json
from compress.fileio import file_lock, write_json_atomic

path, rounds = pathlib.Path(ARGS[0]), int(ARGS[1])
start()
for _ in range(rounds):
    with file_lock(path.with_name(path.name + ".lock")):
        count = json.loads(path.read_text())["count"] if path.exists() else 0
        time.sleep(0.001)  # widens the window a missing lock would lose an update in
        write_json_atomic(path, {"count": count + 1})
"""

OVERWRITE = """
from compress.fileio import write_atomic

path, rounds, size = pathlib.Path(ARGS[0]), int(ARGS[1]), int(ARGS[2])
text = "AB"[INDEX] * size
start()
for _ in range(rounds):
    write_atomic(path, text)
"""


def test_updates_under_the_lock_from_two_processes_are_never_lost(tmp_path):
    path = tmp_path / "count.json"
    with Race(INCREMENT, path, ROUNDS, folder=tmp_path):
        pass
    assert json.loads(path.read_text()) == {"count": 2 * ROUNDS}
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("go")) == \
        ["count.json"]  # the lock file goes with its last holder, no temporary file stays


def test_two_processes_writing_one_file_leave_one_whole_version_at_every_moment(tmp_path):
    path, size = tmp_path / "shared.txt", 200_000
    path.write_text("A" * size)
    versions, reads = {"A" * size, "B" * size}, 0
    with Race(OVERWRITE, path, ROUNDS, size, folder=tmp_path) as race:
        while race.running():
            assert path.read_text() in versions, "a torn file"
            reads += 1
    assert path.read_text() in versions and reads > 0
    assert not list(tmp_path.glob("*.tmp"))


def test_a_failed_write_names_the_users_file_and_leaves_the_previous_one(tmp_path):
    path = tmp_path / "report.md"
    path.write_text("before")
    with pytest.raises(OSError) as failed, atomic_path(path) as tmp:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert failed.value.filename == str(path) and path.read_text() == "before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]
    write_atomic(path, "after")
    assert path.read_text() == "after"


def test_a_lock_held_by_a_live_process_is_busy_and_a_killed_holders_is_taken(tmp_path):
    lock = tmp_path / "cache.json.lock"
    with holding("from compress.fileio import file_lock", f"file_lock({str(lock)!r})",
                 tmp_path) as holder:
        for _ in range(ROUNDS):
            with pytest.raises(LockBusy) as busy, file_lock(lock, wait=False):
                pass
            assert busy.value.owner == holder.pid and lock_owner(lock) == holder.pid
        holder.kill()
        holder.wait()
        assert lock.exists()  # a killed holder cannot remove it ...
        with file_lock(lock, wait=False):  # ... but holds it no longer
            assert lock_owner(lock) == os.getpid()
    assert not lock.exists()

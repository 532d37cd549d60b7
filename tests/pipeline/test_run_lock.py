"""The run folder's lock between real processes: never taken from a live run, never held by
two at once, taken over from a killed one."""

from __future__ import annotations

import os

import pytest
from racing import ROUNDS, Race, holding

from compress.errors import UserError
from compress.fileio import lock_owner
from compress.pipeline.runstore import LOCK, MARKER, RunStore

TRY_TO_RUN = """
import os
from compress.errors import UserError
from compress.pipeline.runstore import RunStore

folder, rounds = pathlib.Path(ARGS[0]), int(ARGS[1])
inside = folder.parent / "inside"
held = refused = 0
start()
for _ in range(rounds):
    try:
        with RunStore(folder).locked():
            os.close(os.open(inside, os.O_CREAT | os.O_EXCL))  # FileExistsError: two runs
            time.sleep(0.002)
            os.unlink(inside)
            held += 1
    except UserError as error:
        assert str(folder) in str(error), error
        refused += 1
print(held, refused)
"""


@pytest.fixture()
def run_folder(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / MARKER).touch()
    return folder


def _holding_run(folder):
    return holding("from compress.pipeline.runstore import RunStore",
                   f"RunStore({str(folder)!r}).locked()", folder.parent)


def test_a_live_runs_folder_is_refused_every_time_and_its_lock_kept(run_folder):
    with _holding_run(run_folder) as holder:
        for _ in range(ROUNDS):
            with pytest.raises(UserError) as refused, RunStore(run_folder).locked():
                pass
            assert str(refused.value) == (f"run folder {run_folder} is in use by process "
                                          f"{holder.pid}; wait for it or choose another --out")
            assert lock_owner(run_folder / LOCK) == holder.pid
    assert not (run_folder / LOCK).exists() and (run_folder / MARKER).exists()


def test_two_processes_starting_runs_in_one_folder_never_run_at_once(run_folder):
    with Race(TRY_TO_RUN, run_folder, ROUNDS, folder=run_folder.parent) as race:
        pass
    counts = [tuple(map(int, output.split())) for output in race.outputs]
    assert all(held + refused == ROUNDS for held, refused in counts)
    assert sum(held for held, _ in counts) > 0  # a refusal means the other one held it
    assert not (run_folder / LOCK).exists() and (run_folder / MARKER).exists()


def test_a_killed_runs_lock_is_taken_over(run_folder):
    with _holding_run(run_folder) as holder:
        holder.kill()
        holder.wait()
        assert lock_owner(run_folder / LOCK) == holder.pid  # left behind by the killed run
        with RunStore(run_folder).locked():
            assert lock_owner(run_folder / LOCK) == os.getpid()
    assert not (run_folder / LOCK).exists() and (run_folder / MARKER).exists()

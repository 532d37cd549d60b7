"""Real processes racing on shared files, for the tests of locks and atomic writes: threads
would share one process's file descriptors and locks, and prove nothing about two search
workers or torchrun ranks."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROUNDS = 50  # each racing process repeats its part this often

# Put before each racer's script: `start()` waits, once its imports are done, until every
# racer is ready, so that the loops overlap instead of running one after the other.
_BARRIER = """
import pathlib, sys, time
GO, INDEX, ARGS = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]

def start():
    pathlib.Path(f"{GO}.ready{INDEX}").touch()
    while not GO.exists():
        time.sleep(0.001)
"""


class Race:
    """`script` run by `processes` interpreters at once; each sees INDEX (0, 1, ...) and
    ARGS (`args` as text) and calls start() before its loop. The body of a `with` block
    runs while they race; leaving it waits for them, and any that failed fails the test
    with its error output."""

    def __init__(self, script: str, *args: object, folder: Path, processes: int = 2,
                 timeout: float = 120):
        self.go, self.timeout = folder / "go", timeout
        self.processes = [subprocess.Popen(
            [sys.executable, "-c", _BARRIER + script, str(self.go), str(index),
             *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for index in range(processes)]
        self.outputs: list[str] = []

    def __enter__(self) -> Race:
        deadline = time.monotonic() + self.timeout
        for index, process in enumerate(self.processes):
            while not Path(f"{self.go}.ready{index}").exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    self._fail(process)
                time.sleep(0.005)
        self.go.touch()
        return self

    def running(self) -> bool:
        return any(process.poll() is None for process in self.processes)

    def __exit__(self, *exc_info) -> None:
        try:
            for process in self.processes:
                out, err = process.communicate(timeout=self.timeout)
                assert process.returncode == 0, f"racer {process.args[4]} failed:\n{err}"
                self.outputs.append(out)
        finally:
            for process in self.processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()

    def _fail(self, process: subprocess.Popen) -> None:
        for each in self.processes:
            if each.poll() is None:
                each.kill()
        _, err = process.communicate()
        raise AssertionError(f"racer {process.args[4]} did not start:\n{err}")


_HOLD = """
import pathlib, sys, time
held, stop = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
{setup}
with {enter}:
    held.touch()
    while not stop.exists():
        time.sleep(0.01)
"""


@contextmanager
def holding(setup: str, enter: str, folder: Path, timeout: float = 120
            ) -> Iterator[subprocess.Popen]:
    """A live process inside `with <enter>:` (after running `setup`) for as long as the
    block runs; then it is told to leave and must end cleanly, unless the block ended it."""
    held, stop = folder / "held", folder / "stop"
    process = subprocess.Popen([sys.executable, "-c", _HOLD.format(setup=setup, enter=enter),
                                str(held), str(stop)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while not held.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"the holder did not start:\n{process.communicate()[1]}")
            time.sleep(0.005)
        yield process
        if process.poll() is None:  # else the block ended it
            stop.touch()
            _, err = process.communicate(timeout=timeout)
            assert process.returncode == 0, f"the holder failed:\n{err}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

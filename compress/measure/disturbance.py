"""Was a timing disturbed? How much CPU other processes (and the hypervisor) took from the
machine while a model was timed, read from the kernel's counters in short segments.

The rule, from measurements on a 2-core KVM machine (benchmarks/timing_disturbance.py,
benchmarks/RESULTS.md "Latency stability and timing method", 2026-12-06): with nothing else
running, the CPU time the kernel counts outside the timing process stayed within 0.05 cores
per 0.2 s segment; a second process spinning on one core showed 0.4-0.95 cores and moved a
pair's speed-up from 3.3x to as much as 6.9x. A segment in which other processes used more than
FOREIGN_LOAD_LIMIT cores (0.2) is disturbed: the runs timed in it are left out and timed
again, up to RETIME_LIMIT times the runs asked for in all. A timing that could not gather
its runs in quiet segments within that limit keeps every run and is marked disturbed.

Where the counters cannot be read (not Linux), nothing is judged: every segment is quiet.
`COMPRESS_RETIME_LIMIT` sets the limit (1: never time again; the test suite, whose workers
share the cores, sets it).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

FOREIGN_LOAD_LIMIT = 0.2  # cores used by other processes in a segment
SEGMENT_SECONDS = 0.2  # the kernel counts in ticks of 10 ms: 40 per segment on 2 cores
RETIME_LIMIT = 3.0  # runs timed in all, at most, over the runs asked for


def retime_limit() -> float:
    """RETIME_LIMIT, or COMPRESS_RETIME_LIMIT where it is set (at least 1)."""
    value = os.environ.get("COMPRESS_RETIME_LIMIT")
    return RETIME_LIMIT if not value else max(1.0, float(value))


@dataclass(frozen=True)
class _Counters:
    busy: int  # ticks every CPU spent on anything but idle and I/O wait, steal included
    own: int  # ticks this process (all its threads) ran
    at: float


def _read_counters() -> _Counters | None:
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        own_fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return _Counters(user + nice + system + irq + softirq + steal,
                     int(own_fields[11]) + int(own_fields[12]), time.perf_counter())


class CpuWatch:
    """Call `segment_load()` between timed runs: every SEGMENT_SECONDS it returns the cores
    other processes used since the last segment ended (None in between, or always where the
    counters cannot be read)."""

    def __init__(self) -> None:
        self._ticks_per_s = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last = _read_counters()

    @property
    def available(self) -> bool:
        return self._last is not None

    def segment_load(self) -> float | None:
        if self._last is None:
            return None
        now = time.perf_counter()
        if now - self._last.at < SEGMENT_SECONDS:
            return None
        counters = _read_counters()
        if counters is None:
            return None
        ticks = (counters.at - self._last.at) * self._ticks_per_s
        load = (counters.busy - self._last.busy - (counters.own - self._last.own)) / ticks
        self._last = counters
        return max(0.0, load)

    def close_segment(self) -> float | None:
        """The load of the segment in progress however short (at the end of a timing)."""
        if self._last is None:
            return None
        counters = _read_counters()
        ticks = (counters.at - self._last.at) * self._ticks_per_s if counters else 0
        if counters is None or ticks < 2:  # under two ticks: too short to judge
            return None
        load = (counters.busy - self._last.busy - (counters.own - self._last.own)) / ticks
        self._last = counters
        return max(0.0, load)


class QuietItems:
    """Items (runs or cycles) labelled quiet or disturbed by the segment they were timed in:
    `add` each one as it is timed, `tick` after it; `quiet` counts those judged quiet and the
    pending ones, `disturbed` those judged disturbed."""

    def __init__(self, watch: CpuWatch | None = None) -> None:
        self.watch = watch or CpuWatch()
        self.labels: list[bool] = []  # True: quiet
        self.pending = 0  # timed since the last segment ended, not judged yet
        self.stayed_disturbed = False  # too few quiet ones within the retime limit
        self._judged_quiet = 0  # a count, not a sum of labels: it is asked after every run

    def add(self) -> None:
        self.pending += 1

    def tick(self, final: bool = False) -> None:
        load = self.watch.close_segment() if final else self.watch.segment_load()
        if load is None and not final:
            return
        quiet = load is None or load <= FOREIGN_LOAD_LIMIT
        self.labels += [quiet] * self.pending
        self._judged_quiet += self.pending if quiet else 0
        self.pending = 0

    @property
    def quiet(self) -> int:
        return self._judged_quiet + self.pending

    @property
    def disturbed(self) -> int:
        return len(self.labels) - self._judged_quiet

    @property
    def left_out(self) -> int:
        """The disturbed ones, left out and timed again (none where the timing stayed
        disturbed: then every one is kept)."""
        return 0 if self.stayed_disturbed else self.disturbed

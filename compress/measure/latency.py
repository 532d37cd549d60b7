"""Latency of a runner (ONNX Runtime session or torch model): warm-up, then timed runs.

How the figures are kept stable on a shared, noisy machine:
- warm-up: `warmup` runs and at least WARMUP_MIN_SECONDS of runs, so that thread pools,
  allocators, caches and clock frequency have settled before timing starts (`warmup` 0:
  none at all, for smoke runs and tests, whose figures then include cold runs);
- fixed threads: ONNX Runtime's intra-op pool size is set explicitly (bench: the cores this
  process may use), one inter-op thread;
- robust statistics: the median is the headline figure (a run that the OS pre-empts lands
  in p99, not in the median); mean and standard deviation are reported to show the spread;
- comparisons run interleaved in blocks (see compare_latency), so drift hits both models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

WARMUP_MIN_SECONDS = 0.5
# Pause when switching models: the worker threads of the session just used keep spinning
# for a moment and would slow the next one (seen at 2 threads: 4.9 ms instead of 2.3 ms).
SWITCH_PAUSE_SECONDS = 0.02


@dataclass(frozen=True)
class Latency:
    batch: int
    median_ms: float
    p90_ms: float
    runs: int
    provider: str
    p99_ms: float = 0.0
    mean_ms: float = 0.0
    std_ms: float = 0.0
    min_ms: float = 0.0

    @classmethod
    def from_times(cls, batch: int, provider: str, times_ms: list[float]) -> "Latency":
        times = np.asarray(times_ms)
        return cls(batch, float(np.median(times)), float(np.percentile(times, 90)), len(times),
                   provider, float(np.percentile(times, 99)), float(times.mean()),
                   float(times.std(ddof=1)) if len(times) > 1 else 0.0, float(times.min()))

    @property
    def images_per_s(self) -> float:
        return 1000.0 * self.batch / self.median_ms


def random_batch(batch: int, input_size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(
        (batch, 3, input_size, input_size)).astype(np.float32)


def _warm_up(runner: Any, prepared: Any, warmup: int) -> None:
    started = time.perf_counter()
    done = 0
    while done < warmup or (warmup and time.perf_counter() - started < WARMUP_MIN_SECONDS):
        runner(prepared)
        done += 1


def measure_latency(runner: Any, input_size: int, batch: int = 1, warmup: int = 10,
                    runs: int = 50, seconds: float | None = None) -> Latency:
    """Time `runs` runs, or as many as fit in `seconds` (at least 10) when it is given."""
    prepared = runner.prepare(random_batch(batch, input_size))
    _warm_up(runner, prepared, warmup)
    times: list[float] = []
    started = time.perf_counter()
    while (len(times) < runs) if seconds is None else \
            (time.perf_counter() - started < seconds or len(times) < 10):
        start = time.perf_counter()
        runner(prepared)
        times.append((time.perf_counter() - start) * 1000)
    return Latency.from_times(batch, runner.provider, times)


@dataclass(frozen=True)
class Comparison:
    a: Latency
    b: Latency
    ratio: float  # median(a) / median(b): how many times faster b is than a

    @property
    def min_ratio(self) -> float:
        """min(a) / min(b): the same, from each model's fastest run. Steadier than `ratio`
        for one set of files here, but no correction of it: the two disagreed either way
        by up to 50 % for small models (see time_in_turn)."""
        return self.a.min_ms / self.b.min_ms


def compare_latency(runner_a: Any, runner_b: Any, input_size: int, batch: int = 1,
                    warmup: int = 10, runs: int = 100, block: int = 10,
                    seconds: float | None = None, input_size_b: int | None = None
                    ) -> Comparison:
    """Time two models in alternating blocks (A x block, B x block, A ...), so that a noisy
    machine slows both alike; `runs` timed runs each, or blocks for `seconds` in all.
    `input_size_b`: B's input size when it differs from A's (a resized model).

    Blocks, not single runs: ONNX Runtime's worker threads keep spinning for a while after
    a run, and with strict A B A B alternation the spinning threads of one session steal
    cores from the other (seen here: 1.7x by A B A B where runs alone and blocks gave 2.0x).
    Each switch waits SWITCH_PAUSE_SECONDS, and the first run of each block is not counted.
    """
    blocks = blocks_in_turn([runner_a, runner_b], [input_size, input_size_b or input_size],
                             batch, warmup, runs, block, seconds)
    a, b = (Latency.from_times(batch, runner.provider, [t for times in per_block for t in times])
            for runner, per_block in zip((runner_a, runner_b), blocks))
    return Comparison(a, b, a.median_ms / b.median_ms)


@dataclass(frozen=True)
class InTurn:
    ratios: list[float]  # how many times faster each model runs than the first
    medians_ms: list[float]  # each model's median over all its timed runs


class FilesInTurn(Protocol):
    """What times ONNX files in turn for a caller that must not know how or where (the
    plan's timings get the pipeline's measurer through it)."""

    def time_in_turn(self, paths: list[Path], runs: int | None = None, batch: int = 1
                     ) -> InTurn:
        """How many times faster each file runs than the first, and each one's median ms."""


def time_in_turn(runners: list[Any], input_size: int, batch: int = 1, warmup: int = 10,
                 runs: int = 100, block: int = 5, rotate: bool = True) -> InTurn:
    """How many times faster each model runs than the first, timed in turn block by block:
    the median over cycles of the first's block median over the model's. A cycle's models
    run within a fraction of a second of each other, so a slow spell of the machine that
    lasts a few cycles moves a few ratios, not the result (overall medians would move).
    The order rotates every cycle (`rotate`): in a fixed order the position biases the
    ratios (ten copies of one model measured 1.00-1.12x faster than the first in one sitting,
    0.95-1.00x in another; benchmarks/turn_order_bias.py), and such a bias, summed over
    dozens of cuts, promised savings no plan delivered.

    Medians, not the fastest runs, though the ratio of fastest runs is steadier here (the
    same three files in four rounds: 4.04-4.25x against 3.75-5.00x;
    benchmarks/ratio_estimators.py): a user's latency, and the re-timing that judges a plan,
    are medians, and the fastest runs put a small model's speed-up lower (5.55x against
    6.84x, 7.03x against 9.45x re-timed), so plans made on them asked for more than the
    median needed and overshot (189 % of a 5x target; benchmarks/RESULTS.md, sixth
    session)."""
    blocks = blocks_in_turn(runners, [input_size] * len(runners), batch, warmup, runs, block,
                             rotate=rotate)
    return InTurn([per_cycle_ratio(blocks[0], runner_blocks) for runner_blocks in blocks],
                  [float(np.median([t for b in runner_blocks for t in b]))
                   for runner_blocks in blocks])


def per_cycle_ratio(first: list[list[float]], other: list[list[float]]) -> float:
    """How many times faster `other` ran than `first`, from their blocks of one turn: the
    median over cycles of the ratio of block medians."""
    return float(np.median([np.median(f) / np.median(o) for f, o in zip(first, other)]))


def blocks_in_turn(runners: list[Any], input_sizes: list[int], batch: int, warmup: int,
                   runs: int, block: int, seconds: float | None = None, rotate: bool = False
                   ) -> list[list[list[float]]]:
    """For each runner, the times (ms) of each of its blocks; with `rotate`, cycle k starts
    with runner k (mod their number)."""
    prepared = [runner.prepare(random_batch(batch, size))
                for runner, size in zip(runners, input_sizes)]
    for runner, inputs in zip(runners, prepared):
        _warm_up(runner, inputs, warmup)
    times: list[list[list[float]]] = [[] for _ in runners]
    block = max(1, min(block, runs))
    cycles, started = 0, time.perf_counter()
    while cycles < max(1, runs // block) if seconds is None else \
            (time.perf_counter() - started < seconds or cycles < 2):
        order = list(range(len(runners)))
        if rotate:
            order = order[cycles % len(order):] + order[:cycles % len(order)]
        cycles += 1
        for index in order:
            runner, inputs, blocks = runners[index], prepared[index], times[index]
            time.sleep(SWITCH_PAUSE_SECONDS)
            runner(inputs)
            current = []
            for _ in range(block):
                start = time.perf_counter()
                runner(inputs)
                current.append((time.perf_counter() - start) * 1000)
            blocks.append(current)
    return times

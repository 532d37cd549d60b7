"""Model latency with ONNX Runtime: warm-up, then many timed runs, median and p90."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compress.onnx_export import ort_logits, ort_session


@dataclass(frozen=True)
class Latency:
    batch: int
    median_ms: float
    p90_ms: float
    runs: int
    provider: str


def measure_latency(onnx_path: str | Path, input_size: int, batch: int = 1,
                    device: str = "cpu", warmup: int = 10, runs: int = 50,
                    threads: int | None = None) -> Latency:
    session = ort_session(onnx_path, device, threads)
    images = np.random.default_rng(0).standard_normal(
        (batch, 3, input_size, input_size)).astype(np.float32)
    for _ in range(warmup):
        ort_logits(session, images)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        ort_logits(session, images)
        times.append((time.perf_counter() - start) * 1000)
    return Latency(batch, float(np.median(times)), float(np.percentile(times, 90)), runs,
                   session.get_providers()[0])


@dataclass(frozen=True)
class Comparison:
    a: Latency
    b: Latency
    ratio: float  # median(a) / median(b): how many times faster b is than a


def compare_latency(path_a: str | Path, path_b: str | Path, input_size: int, batch: int = 1,
                    device: str = "cpu", warmup: int = 10, runs: int = 100,
                    threads: int | None = None, block: int = 10) -> Comparison:
    """Time two models in alternating blocks (A x block, B x block, A ...), so that a noisy
    machine slows both alike.

    Blocks, not single runs: ONNX Runtime's worker threads keep spinning for a while after
    a run, and with strict A B A B alternation the spinning threads of one session steal
    cores from the other (seen here: 1.7x by A B A B where runs alone and blocks gave 2.0x).
    The first run of each block, right after the switch, is not counted.
    """
    sessions = [ort_session(path_a, device, threads), ort_session(path_b, device, threads)]
    images = np.random.default_rng(0).standard_normal(
        (batch, 3, input_size, input_size)).astype(np.float32)
    for session in sessions:
        for _ in range(warmup):
            ort_logits(session, images)
    times: list[list[float]] = [[], []]
    block = max(1, min(block, runs))
    for _ in range(max(1, runs // block)):
        for session, bucket in zip(sessions, times):
            ort_logits(session, images)
            for _ in range(block):
                start = time.perf_counter()
                ort_logits(session, images)
                bucket.append((time.perf_counter() - start) * 1000)
    a, b = (Latency(batch, float(np.median(t)), float(np.percentile(t, 90)), len(t),
                    s.get_providers()[0]) for s, t in zip(sessions, times))
    return Comparison(a, b, a.median_ms / b.median_ms)

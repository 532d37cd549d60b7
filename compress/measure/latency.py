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
                    threads: int | None = None) -> Comparison:
    """Time two models in turn (A B A B ...), so that a noisy machine slows both alike."""
    sessions = [ort_session(path_a, device, threads), ort_session(path_b, device, threads)]
    images = np.random.default_rng(0).standard_normal(
        (batch, 3, input_size, input_size)).astype(np.float32)
    for session in sessions:
        for _ in range(warmup):
            ort_logits(session, images)
    times: list[list[float]] = [[], []]
    for _ in range(runs):
        for session, bucket in zip(sessions, times):
            start = time.perf_counter()
            ort_logits(session, images)
            bucket.append((time.perf_counter() - start) * 1000)
    a, b = (Latency(batch, float(np.median(t)), float(np.percentile(t, 90)), runs,
                    s.get_providers()[0]) for s, t in zip(sessions, times))
    return Comparison(a, b, a.median_ms / b.median_ms)

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

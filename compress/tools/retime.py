"""Timing finished ONNX files against each other, interleaved (A B A B ...), so that a busy
machine slows both alike: one pair (`time_interleaved`), or several models against one
baseline over several rounds (`retime`, for figures from runs made at different times)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

from compress.errors import UserError
from compress.measure.latency import Comparison, compare_latency
from compress.measure.runtime import RunnerOptions
from compress.measure.threads import torch_threads
from compress.tools.bench import open_model


def time_interleaved(path_a: str | Path, path_b: str | Path, runs: int = 300,
                     provider: str = "cpu", threads: int | None = None) -> Comparison:
    """Batch-1 latency of two models timed interleaved; `ratio`: the speed-up of b over a
    (the median over cycles of a's block median over b's). Each model runs at its own stored input size."""
    options = RunnerOptions(provider=provider, threads=threads)
    a, b = open_model(path_a, options), open_model(path_b, options)
    with torch_threads(threads):  # checkpoints' (timed in torch); ONNX runtimes have their own
        return compare_latency(a.runner, b.runner, a.input_size, runs=runs,
                               input_size_b=b.input_size)


def retime(baseline: str | Path, models: dict[str, str | Path], runs: int = 300,
           rounds: int = 3, echo: Callable[[str], None] = print, threads: int | None = None
           ) -> dict[str, list[Comparison]]:
    """Each model against the baseline, one comparison per round (`ratio`: the median of
    per-cycle ratios of block medians, `min_ratio`: of fastest runs), at `threads` intra-op
    threads (None: the runtime's default)."""
    options = RunnerOptions(threads=threads)
    reference = open_model(baseline, options)
    opened = {name: open_model(path, options) for name, path in models.items()}
    onnx = str(baseline).endswith(".onnx")
    for name, path in models.items():
        if str(path).endswith(".onnx") != onnx:
            echo(f"note: {name} runs in {'torch' if onnx else 'ONNX Runtime'} and the baseline "
                 f"in {'ONNX Runtime' if onnx else 'torch'}: its speed-up compares the "
                 "runtimes too (export it with compress export to compare models alone)")
    comparisons: dict[str, list[Comparison]] = {name: [] for name in models}
    for round_index in range(rounds):
        for name, model in opened.items():
            with torch_threads(threads):
                comparison = compare_latency(reference.runner, model.runner,
                                             reference.input_size, runs=runs,
                                             input_size_b=model.input_size)
            comparisons[name].append(comparison)
            echo(f"round {round_index + 1}/{rounds}  {name}: {comparison.ratio:.2f}x "
                 f"({comparison.spread_text}; fastest runs {comparison.min_ratio:.2f}x)")
    return comparisons


def parse_named_models(items: list[str]) -> dict[str, str]:
    """NAME=MODEL arguments as {name: path}."""
    models = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"{item!r}: give NAME=MODEL (for example small=run/final.onnx)")
        if name in models:
            raise UserError(f"{name!r} is named twice")
        models[name] = path
    return models


def retime_lines(baseline: str | Path, runs: int, rounds: int,
                 comparisons: dict[str, list[Comparison]], threads: int | None = None
                 ) -> list[str]:
    """The table `compress retime` prints: per model the median over rounds of the speed-up
    and each round's, as a ratio of medians and of fastest runs."""
    lines = [f"speed-up over {baseline} (batch 1, {runs} interleaved runs each, {rounds} "
             f"rounds, {_threads_text(threads)}): ratio of "
             "medians, and of fastest runs (they can disagree on a shared machine)"]
    for name, done in comparisons.items():
        medians, fastest = [c.ratio for c in done], [c.min_ratio for c in done]
        lines.append(f"{name:<32} median {statistics.median(medians):.2f}x   rounds "
                     + ", ".join(f"{v:.2f}x" for v in medians)
                     + f"   fastest runs {statistics.median(fastest):.2f}x   rounds "
                     + ", ".join(f"{v:.2f}x" for v in fastest))
    return lines


def _threads_text(threads: int | None) -> str:
    if not threads:
        return "the runtime's default threads"
    return f"{threads} intra-op thread{'s' if threads > 1 else ''}"


def retime_json(baseline: str | Path, models: dict[str, str | Path], runs: int,
                comparisons: dict[str, list[Comparison]], threads: int | None = None) -> dict:
    return {"baseline": str(baseline), "runs": runs, "threads": threads,
            "models": {name: {"path": str(models[name]),
                              "speedups": [c.ratio for c in done],
                              "speedups_fastest_runs": [c.min_ratio for c in done]}
                       for name, done in comparisons.items()}}

"""Where an ONNX model's time goes, per operator type: ONNX Runtime's own profiler over a
number of runs, kernel times summed per op type (after graph optimisation, so a Conv fused
with its activation counts as FusedConv), and the time between kernels (the session's
overhead per run), so a user sees what is left to cut.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Suffix ONNX Runtime gives a node's kernel event (others: _fence_before, _fence_after).
KERNEL_EVENT = "_kernel_time"


@dataclass(frozen=True)
class OpTypeShare:
    op_type: str  # as executed (fused kernels keep their fused name); "(between kernels)"
    nodes: int  # nodes of this type in the optimised graph
    ms_per_run: float
    share: float  # of the session's run time


def op_type_profile(onnx_path: str | Path, input_size: int, batch: int = 1,
                    provider: str = "cpu", threads: int | None = None, runs: int = 50
                    ) -> list[OpTypeShare]:
    """Time per run and share of it per op type, largest first, with the time outside any
    kernel as "(between kernels)". Runs after 5 untimed ones; profiling adds a little
    overhead of its own, so shares, not absolute times, are the figure to read."""
    from compress.measure.runners import open_session

    with tempfile.TemporaryDirectory() as tmp:
        session, _ = open_session(onnx_path, provider, threads,
                                  profile_prefix=str(Path(tmp) / "profile"))
        feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(
            (batch, 3, input_size, input_size)).astype(np.float32)}
        for _ in range(5 + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    return _shares(events, skip_runs=5)


def _shares(events: list[dict], skip_runs: int) -> list[OpTypeShare]:
    """Kernel times per op type over the runs after the first `skip_runs`."""
    runs = sorted((e for e in events if e.get("cat") == "Session"
                   and e.get("name") == "model_run"), key=lambda e: e["ts"])
    if len(runs) <= skip_runs:
        raise ValueError("the profile holds too few runs")
    counted = runs[skip_runs:]
    start = counted[0]["ts"]
    run_total = sum(e["dur"] for e in counted)
    per_type: dict[str, float] = defaultdict(float)
    nodes: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith(KERNEL_EVENT) \
                or event["ts"] < start:
            continue
        op_type = event.get("args", {}).get("op_name", "?")
        per_type[op_type] += event["dur"]
        nodes[op_type].add(event["name"][:-len(KERNEL_EVENT)])
    between = max(0.0, run_total - sum(per_type.values()))
    rows = [OpTypeShare(op, len(nodes[op]), us / len(counted) / 1000, us / run_total)
            for op, us in per_type.items()]
    rows.append(OpTypeShare("(between kernels)", 0, between / len(counted) / 1000,
                            between / run_total))
    return sorted(rows, key=lambda row: -row.share)


def format_profile(rows: list[OpTypeShare], top: int = 8) -> list[str]:
    """The largest op types, the rest summed."""
    lines = [f"{'op type':<22} {'nodes':>5} {'ms/run':>8} {'share':>7}"]
    for row in rows[:top]:
        lines.append(f"{row.op_type:<22} {row.nodes:>5} {row.ms_per_run:>8.4f} "
                     f"{row.share:>7.1%}")
    rest = rows[top:]
    if rest:
        lines.append(f"{'(' + str(len(rest)) + ' other types)':<22} "
                     f"{sum(r.nodes for r in rest):>5} "
                     f"{sum(r.ms_per_run for r in rest):>8.4f} "
                     f"{sum(r.share for r in rest):>7.1%}")
    return lines

"""Timings that notice other processes on the cores: the kernel's counters read as load,
disturbed runs and cycles left out and timed again up to the limit, a timing that stayed
disturbed marked in the bench table and the run's report."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import HandNet
from torch import nn

from compress.measure import disturbance
from compress.measure.disturbance import FOREIGN_LOAD_LIMIT, CpuWatch
from compress.measure.latency import compare_latency, measure_latency
from compress.measure.runners import OrtRunner
from compress.ops.onnx_export import export_onnx
from compress.pipeline.report import format_row
from compress.pipeline.runstore import StageRecord
from compress.stages.base import StageStatus
from compress.tools.bench import BenchRow, format_rows

LINUX_COUNTERS = Path("/proc/stat").is_file() and Path("/proc/self/stat").is_file()


class ScriptedWatch:
    """A CpuWatch whose segments end every `every` calls with the next load of `loads`
    (then 0): which runs a disturbance hits is chosen by the test, not by the machine."""

    def __init__(self, loads: list[float], every: int = 5) -> None:
        self.loads, self.every, self.calls = list(loads), every, 0

    def segment_load(self) -> float | None:
        self.calls += 1
        if self.calls % self.every:
            return None
        return self.loads.pop(0) if self.loads else 0.0

    def close_segment(self) -> float | None:
        return self.loads.pop(0) if self.loads else 0.0


@pytest.fixture()
def small_onnx(tmp_path):
    return export_onnx(HandNet().eval(), tmp_path / "small.onnx", 32)


@pytest.fixture()
def big_onnx(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(32, 32, 3, padding=1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2)).eval()
    return export_onnx(model, tmp_path / "big.onnx", 32)


@pytest.mark.skipif(not LINUX_COUNTERS, reason="the kernel's CPU counters are Linux's")
def test_a_process_spinning_on_a_core_reads_as_load_and_this_ones_time_as_its_own():
    watch = CpuWatch()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # its start-up
        watch.close_segment()
        loads = []
        while len(loads) < 3:
            load = watch.segment_load()
            if load is not None:
                loads.append(load)
            time.sleep(0.01)
    finally:
        spinner.kill()
        spinner.wait()
    # It has a core to itself or shares one: at least half a core, far above the limit.
    assert min(loads) > 2 * FOREIGN_LOAD_LIMIT, loads
    # This process spinning is its own time, which the load leaves out: the counters see it.
    before = disturbance._read_counters()
    while time.perf_counter() - before.at < 0.5:
        pass
    after = disturbance._read_counters()
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    assert after.own - before.own >= 0.25 * (after.at - before.at) * ticks_per_s


def test_runs_timed_in_a_disturbed_segment_are_left_out_and_timed_again(small_onnx,
                                                                     monkeypatch):
    monkeypatch.setenv("COMPRESS_RETIME_LIMIT", "3")
    # Segments of 5 runs; the second and third are disturbed: 10 runs timed again.
    watch = ScriptedWatch([0.0, 0.9, 0.6], every=5)
    latency = measure_latency(OrtRunner.open(small_onnx, threads=1), 32, warmup=0, runs=20,
                              watch=watch)
    assert (latency.runs, latency.retimed, latency.disturbed) == (20, 10, False)
    assert watch.calls == 30  # 20 quiet runs and the 10 that were left out


def test_a_timing_that_stays_disturbed_stops_at_the_limit_and_is_marked(small_onnx,
                                                                       monkeypatch):
    monkeypatch.setenv("COMPRESS_RETIME_LIMIT", "2")
    latency = measure_latency(OrtRunner.open(small_onnx, threads=1), 32, warmup=0, runs=10,
                              watch=ScriptedWatch([0.9] * 100, every=2))
    # Every run is kept (the figure is what the machine gave) and the row says so.
    assert (latency.runs, latency.disturbed) == (20, True)
    lines = format_rows([BenchRow(1, latency, 1000)])
    assert lines[1].endswith("disturbed")
    assert "did not get clear of them" in lines[-1]
    monkeypatch.setenv("COMPRESS_RETIME_LIMIT", "1")  # 1: never timed again
    never = measure_latency(OrtRunner.open(small_onnx, threads=1), 32, warmup=0, runs=10,
                            watch=ScriptedWatch([0.9] * 100, every=2))
    assert (never.runs, never.disturbed) == (10, True)


def test_disturbed_cycles_of_a_comparison_are_timed_again_and_the_spread_kept(
        small_onnx, big_onnx, monkeypatch):
    monkeypatch.setenv("COMPRESS_RETIME_LIMIT", "3")
    # Cycles of two blocks of 5 runs; a segment every 2 cycles; the first two disturbed.
    watch = ScriptedWatch([0.7, 0.7], every=2)
    comparison = compare_latency(OrtRunner.open(big_onnx, threads=1),
                                 OrtRunner.open(small_onnx, threads=1), 32, warmup=0, runs=50,
                                 block=5, watch=watch)
    assert (comparison.retimed, comparison.disturbed) == (4, False)
    assert comparison.a.runs == comparison.b.runs == 50  # the quiet cycles' runs only
    assert comparison.ratio_p10 <= comparison.ratio <= comparison.ratio_p90
    assert comparison.ratio > 1
    assert "p10-p90 over cycles" in comparison.spread_text
    assert "disturbed" not in comparison.spread_text


def test_a_stage_whose_timing_stayed_disturbed_says_so_in_the_report():
    record = StageRecord(
        index=3, name="prune", status=StageStatus.DONE, note="", params=1000, macs=10**6,
        latency_ms=1.2, latency_p90_ms=1.5, speedup_vs_input=2.0, latency_by_batch={},
        provider="CPUExecutionProvider", macro_f1=0.8, accuracy=0.8, score=1.0, seconds=3,
        checkpoint="c", onnx="o", speedup_spread=[1.8, 2.2])
    assert "disturbed" not in format_row(record)
    assert "(disturbed)" in format_row(replace(record, timing_disturbed=True))

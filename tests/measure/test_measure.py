"""MACs, latency and score: hand-computed networks and the competition's published rows."""

from __future__ import annotations

import math

import pytest
from conftest import TINY_CLASSES, HandNet
from torch import nn

from compress.checkpoint import Checkpoint, save_checkpoint
from compress.measure.latency import compare_latency, measure_latency
from compress.measure.macs import count_macs, count_params
from compress.measure.runners import OrtRunner
from compress.measure.runtime import RuntimeChoice
from compress.measure.score import ScoreConstants, competition_score
from compress.ops.onnx_export import export_onnx


def test_macs_of_a_hand_computed_network():
    expected = (10 * 10 * 8 * 3 * 9) + (5 * 5 * 8 * 1 * 9) + (5 * 5 * 4 * 8) + (4 * 2)
    assert count_macs(HandNet(), 10) == expected == 24_208
    assert count_params(HandNet()) == 8 * 3 * 9 + 16 + 8 * 9 + (8 * 4 + 4) + (4 * 2 + 2)


@pytest.mark.parametrize("f1, time, published", [(0.7012, 58.1225, 1.1676), (0.6530, 92.926, 1.7950)])
def test_time_score_reproduces_the_published_rows(f1, time, published):
    # Published rows fit baseline_f1 = 0.7 and baseline_time ~= 43.17 s.
    score = competition_score(f1, 0.7, ScoreConstants(), time_ratio=time / 43.17)
    assert score == pytest.approx(published, abs=2e-3)


def test_macs_score_and_its_floor():
    constants = ScoreConstants(formula="macs")
    assert competition_score(0.8, 0.8, constants, macs_ratio=0.5) == pytest.approx(1.0)
    assert competition_score(0.4, 0.8, constants, macs_ratio=0.5) == pytest.approx(1.5)
    sigmoid = 1 / (1 + math.exp(-20 * 0.1))
    assert competition_score(0.7, 0.8, constants, macs_ratio=1.0) == \
        pytest.approx(1 + sigmoid)


def test_latency_and_interleaved_comparison(tmp_path):
    small = export_onnx(HandNet().eval(), tmp_path / "small.onnx", 32)
    big_model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 2)).eval()
    big = export_onnx(big_model, tmp_path / "big.onnx", 32)
    latency = measure_latency(OrtRunner.open(small), 32, batch=4, warmup=2, runs=5)
    assert latency.batch == 4 and latency.runs == 5 and latency.provider == "CPUExecutionProvider"
    assert 0 < latency.p10_ms <= latency.median_ms <= latency.p90_ms <= latency.p99_ms
    # One thread each: on a shared 2-core machine a second intra-op thread waits for a core
    # at every kernel, which a model of six small kernels feels as much as one of big ones.
    comparison = compare_latency(OrtRunner.open(big, threads=1), OrtRunner.open(small, threads=1),
                                 32, warmup=2, runs=20)
    # The median of the per-cycle ratios, inside their spread.
    assert comparison.ratio_p10 <= comparison.ratio <= comparison.ratio_p90
    assert comparison.a.runs == comparison.b.runs == 20
    assert comparison.ratio > 1  # ~150x the MACs: the order, not the size of the gap


def test_timings_run_in_one_worker_process_that_outlives_its_errors(tmp_path, monkeypatch,
                                                                   tiny_model, tiny_model_spec):
    from compress import UserError
    from compress.measure import latency, timing_process

    small = export_onnx(HandNet().eval(), tmp_path / "small.onnx", 32)
    big_model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 2)).eval()
    big = export_onnx(big_model, tmp_path / "big.onnx", 32)

    def timed_here(*args, **kwargs):
        raise AssertionError("timed in the pipeline's own process")

    for name in ("compare_latency", "time_in_turn", "measure_latency"):
        monkeypatch.setattr(latency, name, timed_here)
    for kind, (_, result_type) in list(timing_process.KINDS.items()):
        monkeypatch.setitem(timing_process.KINDS, kind, (timed_here, result_type))
    timing = {"input_size": 32, "warmup": 2}
    worker = timing_process.TimingWorker()
    on_cpu = RuntimeChoice("onnxruntime", "cpu", "cpu")
    compared, turn, alone = worker.run(
        [timing_process.compare(big, small, runs=20, **timing),
         timing_process.in_turn([big, small, small], runs=20, **timing),
         timing_process.latency(small, batch=4, runs=5, **timing)], on_cpu, 1)
    # Its spread and disturbance came through the pipe too.
    assert compared.ratio_p10 <= compared.ratio <= compared.ratio_p90
    assert compared.retimed == 0  # the suite never times again (COMPRESS_RETIME_LIMIT=1)
    assert compared.ratio > 1 and compared.b.runs == 20  # ~150x the MACs cannot be faster
    assert len(turn.ratios) == 3 and turn.ratios[0] == 1.0 and turn.ratios[1] > 1
    assert alone.batch == 4 and alone.runs == 5 and alone.provider == "CPUExecutionProvider"
    pid = worker._process.pid
    with pytest.raises(UserError, match="unknown provider 'tpu'"):
        worker.run([timing_process.latency(small, **timing)],
                   RuntimeChoice("onnxruntime", "cpu", "tpu"), 1)
    with pytest.raises(RuntimeError, match="gone.onnx"):
        worker.run([timing_process.latency(tmp_path / "gone.onnx", **timing)], on_cpu, 1)
    # Checkpoints, where a run's stages are timed in torch, in the same process.
    checkpoint = save_checkpoint(tmp_path / "tiny.safetensors", Checkpoint(
        tiny_model, tiny_model_spec, TINY_CLASSES, 32))
    in_torch = worker.run([timing_process.latency(checkpoint, runs=3, **timing)],
                          RuntimeChoice("torch", "cpu"), 1)[0]
    assert in_torch.runs == 3 and in_torch.provider == "torch-cpu-fp32-eager"
    # One process served every request, errors included, and ends when closed.
    assert worker.run([timing_process.latency(small, runs=3, **timing)], on_cpu, 1)[0].runs == 3
    assert worker._process.pid == pid
    process = worker._process
    worker.close()
    assert process.poll() == 0 and worker._process is None


def test_op_type_profile_puts_the_time_where_the_work_is(tmp_path):
    from compress.measure.op_profile import format_profile, op_type_profile

    # Two wide 3x3 convs and a cheap head: the convs must hold most of the kernel time.
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(64, 64, 3, padding=1), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(64, 2)).eval()
    rows = op_type_profile(export_onnx(model, tmp_path / "m.onnx", 64), 64, runs=10,
                           threads=1)
    shares = {row.op_type: row for row in rows}
    assert sum(row.share for row in rows) == pytest.approx(1.0, abs=1e-6)
    convs = [row for row in rows if "Conv" in row.op_type]  # Conv, or FusedConv with ReLU
    assert sum(row.nodes for row in convs) == 2
    # The two convs (150M MACs) against every other kernel (a pooling and a 64x2 Gemm): an
    # order of kernel times, whatever the time between kernels on a busy machine.
    others = [row for row in rows if row not in convs and row.op_type != "(between kernels)"]
    assert others and sum(row.ms_per_run for row in convs) > \
        max(row.ms_per_run for row in others), rows
    assert "(between kernels)" in shares and all(row.ms_per_run >= 0 for row in rows)
    lines = format_profile(rows, top=2)
    assert len(lines) == 4 and "other types" in lines[-1]


def test_a_linear_applied_at_every_pixel_counts_every_pixel():
    """ConvNeXt's pointwise layers are Linears on [N, H, W, C]: H*W positions each."""
    from torch import nn

    from compress.measure.macs import layer_macs

    class PerPixel(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 4, stride=4)
            self.mix = nn.Linear(8, 16)

        def forward(self, x):
            return self.mix(self.stem(x).permute(0, 2, 3, 1))

    macs = layer_macs(PerPixel(), 32)
    assert macs["mix"] == 8 * 8 * 8 * 16
    assert macs["stem"] == 8 * 8 * 8 * 3 * 16


def test_warm_up_lasts_half_a_second_unless_asked_for_none():
    import time

    from compress.measure.latency import WARMUP_MIN_SECONDS, _warm_up

    calls = []
    started = time.perf_counter()
    _warm_up(calls.append, "input", warmup=1)
    assert time.perf_counter() - started >= WARMUP_MIN_SECONDS and len(calls) > 1
    calls.clear()
    _warm_up(calls.append, "input", warmup=0)  # smoke runs and tests: no warm-up at all
    assert calls == []

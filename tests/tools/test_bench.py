"""`compress bench` and `compress inspect` on tiny ONNX files and checkpoints: the JSON
keys, the batch sweep, the interleaved comparison, provider fallback, MACs agreement and
bad input."""

from __future__ import annotations

import json

import onnxruntime
import pytest
from click.testing import CliRunner
from conftest import TINY_CLASSES, HandNet, assert_user_error, run_cli
from torch import nn

from compress.checkpoint import Checkpoint, save_checkpoint
from compress.cli import main
from compress.measure.macs import count_macs
from compress.measure.onnx_macs import onnx_macs, onnx_params
from compress.ops.onnx_export import convert_fp16, export_onnx

FAST = ["--warmup", "0", "--runs", "4", "--no-peak"]


def _bench_json(*args) -> list[dict]:
    result = CliRunner().invoke(main, ["bench", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.strip().splitlines()]


def test_json_has_one_object_per_batch_size_with_the_promised_keys(tiny_onnx, tiny_model):
    rows = _bench_json(tiny_onnx, "--batch", "1,3", *FAST)
    assert [row["batch"] for row in rows] == [1, 3]
    for row in rows:
        assert row["provider"] == "CPUExecutionProvider" and row["runs"] == 4
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["macs"] == count_macs(tiny_model, 32)
        assert row["gflops"] == pytest.approx(
            2 * row["macs"] * row["batch"] / (row["p50_ms"] / 1000) / 1e9)
        assert row["images_per_s"] == pytest.approx(1000 * row["batch"] / row["p50_ms"])


class _TickingClock:
    """time.perf_counter for compress.measure.latency: every reading 1 ms after the last."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 0.001
        return self.now


def test_seconds_option_times_for_a_duration(tiny_onnx, monkeypatch):
    """On a clock that ticks 1 ms a reading (three readings a run), --seconds decides the
    number of runs, beyond the minimum of 10, and twice the time gives twice the runs."""
    from compress.measure import latency

    runs = {}
    for seconds in ("0.3", "0.6"):
        monkeypatch.setattr(latency, "time", _TickingClock())
        (row,) = _bench_json(tiny_onnx, "--batch", "1", "--seconds", seconds, "--warmup", "0",
                             "--no-peak")
        assert row["p50_ms"] == pytest.approx(1.0)  # each run: two readings 1 ms apart
        runs[seconds] = row["runs"]
    assert 90 <= runs["0.3"] <= 110
    assert abs(runs["0.6"] - 2 * runs["0.3"]) <= 2


def test_compare_reports_the_per_cycle_speed_up_and_its_spread(tmp_path, tiny_onnx):
    big_model = nn.Sequential(nn.Conv2d(3, 96, 3, padding=1), nn.Conv2d(96, 96, 3, padding=1),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(96, 3)).eval()
    big = export_onnx(big_model, tmp_path / "big.onnx", 32)
    assert onnx_macs(big) > 30 * onnx_macs(tiny_onnx)
    # One thread: on a shared 2-core machine a second intra-op thread waits for a core at
    # every kernel, which the many small kernels of the tiny model feel most.
    (row,) = _bench_json(tiny_onnx, "--compare", big, "--batch", "1", "--warmup", "1",
                         "--runs", "20", "--no-peak", "--threads", "1")
    assert row["runs"] == 20
    # The median over cycles of the block medians' ratio, inside its p10-p90 over cycles.
    assert row["speedup_p10"] <= row["speedup_vs_compare"] <= row["speedup_p90"]
    assert row["retimed_cycles"] == 0  # the suite never times again (COMPRESS_RETIME_LIMIT=1)
    assert row["p10_ms"] <= row["p50_ms"]
    assert row["speedup_vs_compare"] > 1  # 30x the MACs: the order, not the size of the gap


def test_a_checkpoint_is_timed_in_torch(tmp_path, tiny_model, tiny_model_spec):
    path = save_checkpoint(tmp_path / "tiny.safetensors",
                           Checkpoint(tiny_model, tiny_model_spec, TINY_CLASSES, 32))
    (row,) = _bench_json(path, "--batch", "2", *FAST)
    assert row["provider"] == "torch-cpu-fp32-eager" and row["batch"] == 2
    assert row["macs"] == count_macs(tiny_model, 32)


def test_profile_gives_each_op_types_share_of_the_time(tmp_path, tiny_onnx, tiny_model,
                                                     tiny_model_spec):
    *rows, profile = _bench_json(tiny_onnx, "--batch", "1", "--profile", *FAST)
    assert [row["batch"] for row in rows] == [1]
    shares = {row["op_type"]: row["share"] for row in profile["op_types"]}
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-6)
    assert any("Conv" in op for op in shares) and "(between kernels)" in shares
    code, output = run_cli(["bench", tiny_onnx, "--batch", "1", "--profile", *FAST])
    assert code == 0 and "share of the time per op type" in output, output
    checkpoint = save_checkpoint(tmp_path / "tiny.safetensors",
                                 Checkpoint(tiny_model, tiny_model_spec, TINY_CLASSES, 32))
    assert_user_error(["bench", checkpoint, "--profile"], "--profile",
                      "profiled in ONNX Runtime only")


@pytest.mark.skipif("CUDAExecutionProvider" in onnxruntime.get_available_providers(),
                    reason="this onnxruntime has CUDA: no fallback to show")
def test_asking_for_cuda_without_it_says_so_and_measures_on_cpu(tiny_onnx):
    code, output = run_cli(["bench", tiny_onnx, "--provider", "cuda", "--batch", "1", *FAST])
    assert code == 0, output
    assert "CUDAExecutionProvider is not available" in output
    assert "measured on CPUExecutionProvider" in output


def test_auto_provider_names_the_provider_it_picked(tiny_onnx):
    code, output = run_cli(["bench", tiny_onnx, "--provider", "auto", "--batch", "1", *FAST])
    assert code == 0, output
    assert "provider auto:" in output and "using " in output


def test_macs_of_a_hand_computed_network_from_its_onnx_file(tmp_path):
    path = export_onnx(HandNet().eval(), tmp_path / "hand.onnx", 10)
    assert onnx_macs(path) == count_macs(HandNet(), 10) == 24_208


def test_onnx_macs_match_torch_for_float32_and_fp16_files(tmp_path, tiny_model, tiny_onnx):
    fp16 = convert_fp16(tiny_onnx, tmp_path / "tiny_fp16.onnx")
    assert onnx_macs(tiny_onnx) == onnx_macs(fp16) == count_macs(tiny_model, 32)
    assert onnx_params(fp16) == onnx_params(tiny_onnx)


def test_inspect_and_bench_agree_on_macs(tiny_onnx):
    code, output = run_cli(["inspect", tiny_onnx, "--json"])
    assert code == 0, output
    summary = json.loads(output)
    (row,) = _bench_json(tiny_onnx, "--batch", "1", *FAST)
    assert summary["macs"] == row["macs"]
    assert summary["classes"] == TINY_CLASSES and summary["input_size"] == 32


def test_a_file_that_is_not_onnx_is_named(tmp_path):
    fake = tmp_path / "model.onnx"
    fake.write_text("not a model")
    assert_user_error(["bench", fake], "model.onnx", "not a valid ONNX model")
    assert_user_error(["inspect", fake], "not a valid ONNX model")


def test_bad_options_are_one_line_errors(tmp_path, tiny_onnx):
    assert_user_error(["bench", tiny_onnx, "--provider", "npu"], "--provider", "npu")
    assert_user_error(["bench", tiny_onnx, "--batch", "1,x"], "--batch")
    assert_user_error(["bench", tmp_path / "missing.onnx"], "not found")
    assert_user_error(["bench", tiny_onnx, "--input-size", "64"], "--input-size 64")
    text = tmp_path / "weights.txt"
    text.write_text("x")
    assert_user_error(["bench", text], "not a model file")

"""Which runtime times a model, and the torch runner's forms on the CPU: the choice for bench,
predict and a recipe's stages (the CUDA fallbacks with a stand-in for the GPU checks), the
deployed runner's precisions against float32, the launch floor, and a recipe timed in
torch. The CUDA paths themselves: tests/measure/test_cuda_runtime.py, on a GPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, TINY_CLASSES, assert_user_error, make_image_folder, run_cli

from compress.checkpoint import Checkpoint, save_checkpoint
from compress.errors import UserError
from compress.measure.latency import measure_latency, random_batch
from compress.measure.runtime import RuntimeChoice, choose_bench_runtime, choose_stage_runtime
from compress.measure.torch_runner import TorchRunner, launch_floor
from compress.training.loaders import CUDA_LOADER_WORKERS, loader_workers

FAST = ["--warmup", "0", "--runs", "4"]


def _no_gpu() -> bool:
    return False


def _gpu() -> bool:
    return True


@pytest.mark.parametrize("suffix, runtime, device, provider, gpu, expected", [
    (".onnx", "auto", None, None, _no_gpu, RuntimeChoice("onnxruntime", "cpu", "cpu")),
    (".safetensors", "auto", None, None, _no_gpu, RuntimeChoice("torch", "cpu")),
    (".safetensors", "onnxruntime", None, None, _no_gpu,
     RuntimeChoice("onnxruntime", "cpu", "cpu")),
    (".onnx", "auto", None, "cuda", _no_gpu, RuntimeChoice("onnxruntime", "cuda", "cuda")),
    (".onnx", "auto", "cuda", None, _no_gpu, RuntimeChoice("onnxruntime", "cuda", "cuda")),
    (".onnx", "auto", "cuda", "tensorrt", _no_gpu,
     RuntimeChoice("onnxruntime", "cuda", "tensorrt")),
    (".onnx", "auto", None, "auto", _no_gpu, RuntimeChoice("onnxruntime", "cpu", "auto")),
    (".safetensors", "auto", "auto", None, _no_gpu, RuntimeChoice("torch", "cpu")),
    (".safetensors", "auto", "auto", None, _gpu, RuntimeChoice("torch", "cuda")),
    (".pt", "torch", None, "cuda", _gpu, RuntimeChoice("torch", "cuda")),
])
def test_bench_runtime_follows_the_file_and_the_options(suffix, runtime, device, provider, gpu,
                                                        expected):
    assert choose_bench_runtime(suffix, runtime, device, provider, gpu) == expected


@pytest.mark.parametrize("suffix, runtime, device, provider, fragment", [
    (".onnx", "torch", None, None, "an ONNX file runs in onnxruntime"),
    (".safetensors", "torch", None, "tensorrt", "--provider tensorrt is ONNX Runtime's"),
    (".safetensors", "auto", "cuda", None, "torch sees no CUDA GPU"),
    (".onnx", "auto", "cpu", "cuda", "contradict"),
    (".onnx", "tvm", None, None, "unknown runtime 'tvm'"),
])
def test_bench_runtime_refuses_what_cannot_run(suffix, runtime, device, provider, fragment):
    with pytest.raises(UserError, match=fragment):
        choose_bench_runtime(suffix, runtime, device, provider, _no_gpu)


def test_stages_on_cuda_take_onnxruntime_where_it_loads_else_torch_and_say_why():
    loads = choose_stage_runtime("cuda:0", "auto", onnxruntime_problem=lambda: None)
    assert loads == RuntimeChoice("onnxruntime", "cuda:0", "cuda", loads.note)
    missing = "onnxruntime 1.32.0 has no CUDA provider"
    fallback = choose_stage_runtime("cuda", "auto", onnxruntime_problem=lambda: missing)
    assert (fallback.runtime, fallback.device, fallback.provider) == ("torch", "cuda", None)
    assert missing in fallback.note and "CUDA graphs" in fallback.note
    assert "run in ONNX Runtime on the CPU" in fallback.note
    with pytest.raises(UserError, match="bench.runtime onnxruntime on cuda: " + missing):
        choose_stage_runtime("cuda", "onnxruntime", onnxruntime_problem=lambda: missing)
    asked = choose_stage_runtime("cuda", "torch", onnxruntime_problem=lambda: None)
    assert asked.runtime == "torch"


def test_stages_on_the_cpu_run_in_onnxruntime_unless_torch_is_asked_for():
    def unused():
        raise AssertionError("the GPU is not probed for a CPU run")

    assert choose_stage_runtime("cpu", "auto", unused) == \
        RuntimeChoice("onnxruntime", "cpu", "cpu")
    assert choose_stage_runtime("cpu", "torch", unused) == RuntimeChoice("torch", "cpu")


def test_half_precision_and_channels_last_forms_agree_with_float32(tiny_model):
    images = random_batch(16, 32)
    reference = TorchRunner.open(tiny_model, "cpu")
    expected = reference(reference.prepare(images))
    assert reference.provider == "torch-cpu-fp32-eager" and expected.dtype == torch.float32
    scale = expected.abs().max()
    for precision, channels_last, tolerance in (("fp32", True, 1e-5), ("fp16", True, 1e-2),
                                                ("bf16", False, 5e-2)):
        import copy

        runner = TorchRunner.open(copy.deepcopy(tiny_model), "cpu", precision=precision,
                                  channels_last=channels_last)
        prepared = runner.prepare(images)
        assert prepared.dtype == runner.dtype and not prepared.is_pinned()
        logits = runner(prepared)
        assert logits.dtype == runner.dtype
        error = (logits.float() - expected).abs().max() / scale
        assert error < tolerance, (precision, channels_last, float(error))
        assert error > 0 or precision == "fp32"  # the precision really changed


def test_the_launch_floor_is_below_a_real_models_latency():
    """The one-kernel floor against two wide 3x3 convs (about 40M MACs): the order of two
    costs a thousand times apart, timed in one thread, not the speed of this machine."""
    wide = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1),
                               torch.nn.Conv2d(64, 64, 3, padding=1),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(64, len(TINY_CLASSES))).eval()
    model = TorchRunner.open(wide, "cpu")
    floor = launch_floor("cpu", len(TINY_CLASSES))
    assert floor.precision == "fp32" and not floor.graphs
    assert floor(floor.prepare(random_batch(2, 32))).shape == (2, len(TINY_CLASSES))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        floor_ms = measure_latency(floor, 32, 1, warmup=3, runs=20).median_ms
        model_ms = measure_latency(model, 32, 1, warmup=3, runs=20).median_ms
    finally:
        torch.set_num_threads(threads)
    assert 0 < floor_ms < model_ms


def test_bench_a_checkpoint_in_bfloat16_reports_the_floor_and_peak(tiny_checkpoint,
                                                                   monkeypatch):
    """The floor and the peak measured for the runner's own precision are the ones
    reported (stand-ins return known figures; the floor's timing is tested above)."""
    from compress.tools import bench

    asked = []

    def floor_ms(device, classes, input_size, precision, graphs, warmup, runs):
        asked.append(("floor", str(device), classes, input_size, precision, warmup, runs))
        return 0.125

    def peak(device, precision):
        asked.append(("peak", str(device), precision))
        return 456.0

    monkeypatch.setattr(bench, "launch_floor_ms", floor_ms)
    monkeypatch.setattr(bench, "matmul_peak_gflops", peak)
    code, output = run_cli(["bench", tiny_checkpoint, "--precision", "bf16", "--batch", "1",
                            "--json", *FAST])
    assert code == 0, output
    (row,) = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert row["provider"] == "torch-cpu-bf16-eager" and row["peak_kind"] == "bf16"
    assert row["launch_floor_ms"] == 0.125 and row["peak_gflops"] == 456.0
    assert asked == [("floor", "cpu", len(TINY_CLASSES), 32, "bf16", 0, 4), ("peak", "cpu", "bf16")]
    code, output = run_cli(["bench", tiny_checkpoint, "--batch", "1", *FAST, "--no-peak"])
    assert code == 0, output
    assert "launch floor (a one-kernel model, same copies and synchronise) at batch 1: " \
        "0.125 ms" in output, output
    assert asked[-1][:5] == ("floor", "cpu", len(TINY_CLASSES), 32, "fp32")  # no peak asked


def test_a_checkpoint_compared_in_onnxruntime_is_exported_first(tmp_path, tiny_model,
                                                                tiny_model_spec):
    small = save_checkpoint(tmp_path / "small.safetensors",
                            Checkpoint(tiny_model, tiny_model_spec, TINY_CLASSES, 64))
    big = REPO / "checkpoints" / "mnv3_trashnet.safetensors"  # timed at the small one's size
    code, output = run_cli(["bench", small, "--compare", big, "--runtime", "onnxruntime",
                            "--batch", "1", "--json", "--warmup", "1", "--runs", "20",
                            "--no-peak"])
    assert code == 0, output
    (row,) = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert row["provider"] == "CPUExecutionProvider" and row["model"].endswith("(as ONNX)")
    assert row["speedup_vs_compare"] > 1  # a MobileNetV3 against four convolutions
    assert list(tmp_path.glob("*.onnx")) == []  # exported beside nothing of the user's


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_cuda_device_without_a_gpu_is_one_error_line(tiny_checkpoint):
    assert_user_error(["bench", tiny_checkpoint, "--device", "cuda"], "--device cuda",
                      "no CUDA GPU")


def test_predict_reports_what_bounds_the_throughput(tmp_path, tiny_model, tiny_model_spec,
                                                    tiny_onnx):
    images = make_image_folder(tmp_path / "imgs", {"test": 4}) / "test"
    checkpoint = save_checkpoint(tmp_path / "same.safetensors",
                                 Checkpoint(tiny_model, tiny_model_spec, TINY_CLASSES, 32))
    rows = {}
    for model, runtime in ((tiny_onnx, "auto"), (checkpoint, "torch")):
        out = tmp_path / f"{runtime}.csv"
        code, output = run_cli(["predict", model, "--images", images, "--out", out,
                                "--runtime", runtime, "--workers", "0", "--batch", "3"])
        assert code == 0, output
        assert "waited" in output and ("bound by decoding" in output
                                       or "bound by the model" in output), output
        rows[runtime] = out.read_text().splitlines()
    assert len(rows["torch"]) == 13
    agreeing = sum(a == b for a, b in zip(rows["auto"], rows["torch"]))
    assert agreeing >= len(rows["torch"]) - 1  # float32 in both: at most one near tie


def test_loader_workers_rise_on_cuda_only():
    cuda = torch.device("cuda")
    assert loader_workers(2, torch.device("cpu")) == 2
    assert 2 <= loader_workers(2, cuda) <= max(2, CUDA_LOADER_WORKERS)
    assert loader_workers(CUDA_LOADER_WORKERS + 4, cuda) == CUDA_LOADER_WORKERS + 4


@pytest.mark.slow
def test_a_recipe_timed_in_torch_times_checkpoints_and_checks_the_timed_form(
        tmp_path, tiny_checkpoint, tiny_data):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "checkpoint": str(tiny_checkpoint),
        "data": {"root": str(tiny_data), "batch_size": 8, "num_workers": 0},
        "bench": {"runtime": "torch", "batch_sizes": [1, 4], "warmup": 1, "runs": 5},
        "device": "cpu",
        "stages": [{"prune": {"ratio": 0.5}}, {"finetune": {"epochs": 1, "lr": 0.01}}]}))
    code, output = run_cli(["run", recipe, "--out", tmp_path / "run"])
    assert code == 0, output
    report = json.loads((tmp_path / "run/report.json").read_text())
    stages = report["stages"]
    assert {s["provider"] for s in stages} == {"torch-cpu-fp32-eager"}
    assert all(s["deployed_top1_agreement"] >= 0.9 for s in stages)
    assert stages[1]["speedup_vs_input"] > 0 and set(stages[1]["latency_by_batch"]) == {"1", "4"}
    floor = report["distance_to_floor"]
    assert floor["runtime"] == "torch-cpu-fp32-eager" and floor["launch_floor_ms"] > 0
    assert floor["peak_gflops"] > floor["gflops"] > 0
    markdown = (tmp_path / "run/report.md").read_text()
    assert "timed interleaved in torch-cpu-fp32-eager" in markdown
    assert "Top-1 agreement of the timed torch form" in markdown
    assert "launch floor (a one-kernel model timed the same way)" in markdown
    assert np.isfinite(stages[-1]["score"])

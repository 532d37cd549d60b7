"""OpenVINO as a measured runtime (the `openvino` extra): bench, predict and a recipe's stages
timed in it, its parity checks, the final model compared across runtimes in the report; and
without the extra, one error line where it is asked for and nothing else changed."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY_CLASSES, assert_user_error, make_image_folder, run_cli, write_tiny_recipe

from compress.checkpoint import Checkpoint, save_checkpoint
from compress.errors import UserError
from compress.measure.openvino_runner import openvino_problem
from compress.measure.runners import OrtRunner
from compress.measure.runtime import choose_stage_runtime
from compress.ops.nncf_quantize import nncf_problem

FAST = ["--warmup", "0", "--runs", "4"]
COMPARED = {"batch_sizes": [1], "warmup": 0, "runs": 3, "compare_runtimes": True}
# Whether it is installed, without importing it: OpenVINO stays out of the suite's process.
needs_openvino = pytest.mark.skipif(openvino_problem(load=False) is not None,
                                    reason=f"{openvino_problem(load=False)}; the OpenVINO "
                                           "paths are untested here")


def in_own_process(args: list) -> tuple[int, str]:
    """Exit code and output of `compress ARGS` in a process of its own. OpenVINO never loads
    into the suite's process: an ONNX Runtime quantisation in a process where OpenVINO had
    run ended in a segmentation fault, and the suite's process quantises in later tests."""
    done = subprocess.run([sys.executable, "-m", "compress", *map(str, args)],
                          capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture()
def without_openvino(monkeypatch):
    """As on a machine without the extra: `import openvino` fails."""
    monkeypatch.setitem(sys.modules, "openvino", None)


@needs_openvino
def test_openvino_runs_the_onnx_file_as_onnxruntime_does(tmp_path, tiny_onnx):
    images = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    script = f"""
import json, numpy as np
from compress.measure.openvino_runner import OvRunner
runner = OvRunner.open({str(tiny_onnx)!r})
images = np.load({str(tmp_path / "images.npy")!r})
np.save({str(tmp_path / "logits.npy")!r}, runner(runner.prepare(images)))
print(json.dumps([runner.input_size(), runner.fixed_batch()]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    input_size, fixed_batch = json.loads(done.stdout.splitlines()[-1])
    onnxruntime = OrtRunner.open(tiny_onnx)
    expected = onnxruntime(onnxruntime.prepare(images))
    got = np.load(tmp_path / "logits.npy")
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-4
    assert input_size == onnxruntime.input_size() == 32
    assert fixed_batch is onnxruntime.fixed_batch() is None  # dynamic batch


@needs_openvino
def test_bench_in_openvino_against_another_file(tmp_path, tiny_onnx):
    code, output = in_own_process(["bench", tiny_onnx, "--runtime", "openvino", "--compare",
                                   tiny_onnx, "--batch", "1", "--json", "--no-peak", *FAST])
    assert code == 0, output
    (row,) = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert row["provider"] == "OpenVINO CPU" and row["speedup_vs_compare"] > 0


@needs_openvino
def test_predict_in_openvino_gives_onnxruntimes_classes(tmp_path, tiny_onnx):
    images = make_image_folder(tmp_path / "imgs", {"test": 6}) / "test"
    rows = {}
    for runtime in ("onnxruntime", "openvino"):
        out = tmp_path / f"{runtime}.csv"
        code, output = in_own_process(["predict", tiny_onnx, "--images", images, "--out",
                                       out, "--runtime", runtime, "--workers", "0"])
        assert code == 0, output
        rows[runtime] = out.read_text().splitlines()
    assert len(rows["openvino"]) == len(rows["onnxruntime"]) > 1
    agreeing = sum(a == b for a, b in zip(rows["onnxruntime"], rows["openvino"]))
    assert agreeing >= len(rows["openvino"]) - 1  # float32 in both: at most one near tie


@needs_openvino
@pytest.mark.slow
def test_a_recipe_timed_in_openvino(tmp_path, tiny_model, tiny_model_spec, tiny_data):
    checkpoint = save_checkpoint(tmp_path / "tiny.safetensors",
                                 Checkpoint(tiny_model, tiny_model_spec, TINY_CLASSES, 32))
    recipe = write_tiny_recipe(tmp_path / "r.yaml", checkpoint, tiny_data,
                               [{"prune": {"ratio": 0.25}}, {"export": {"fp16": True}},
                                {"quantize": {"calibration_images": 8, "timing_runs": 10,
                                              "min_agreement": 0.0}}],
                               bench={"batch_sizes": [1], "warmup": 1, "runs": 3,
                                      "runtime": "openvino", "compare_runtimes": True})
    out = tmp_path / "run"
    code, output = in_own_process(["run", recipe, "--out", out])
    assert code == 0, output
    report = json.loads((out / "report.json").read_text())
    assert {stage["provider"] for stage in report["stages"]} == {"OpenVINO CPU"}
    checks = report["stages"][2]["result"]["checks"]
    assert checks["openvino_fp32"]["relative_error"] < 1e-4
    assert checks["openvino_fp16"]["top1_agreement"] >= 0.9
    # The INT8 file timed and checked in OpenVINO, after OpenVINO ran in this process.
    quantized = report["stages"][3]["result"]
    assert quantized["int8_speedup_vs_float32_b1"] > 0 and quantized["kept"] in ("int8",
                                                                                 "float32")
    assert 0 <= quantized["top1_agreement"] <= 1
    runtimes = report["runtimes"]
    assert set(runtimes["runtimes"]) == {"onnxruntime", "openvino"}
    assert runtimes["fastest"] in runtimes["runtimes"]
    assert runtimes["runtimes"]["onnxruntime"]["speedup_vs_onnxruntime"] == 1.0
    assert runtimes["runtimes"]["openvino"]["top1_agreement_with_onnxruntime"] >= 0.9
    assert report["device"]["runtime"] == "openvino"
    markdown = (out / "report.md").read_text()
    assert "OpenVINO (CPU)" in markdown and "Fastest:" in markdown


@needs_openvino
def test_a_run_compares_runtimes_without_loading_openvino_in_its_process(tmp_path,
                                                                          tiny_checkpoint,
                                                                          tiny_data):
    """The report's OpenVINO figures come from the timing process: a quantisation in a
    process where OpenVINO had run once ended in a segmentation fault."""
    recipe = write_tiny_recipe(tmp_path / "r.yaml", tiny_checkpoint, tiny_data,
                               [{"export": {}}], bench=COMPARED)
    script = ("import sys; from compress.cli import main; "
              f"main(['run', {str(recipe)!r}, '--out', {str(tmp_path / 'run')!r}], "
              "standalone_mode=False); print('openvino' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False", done.stdout
    runtimes = json.loads((tmp_path / "run" / "report.json").read_text())["runtimes"]
    assert set(runtimes["runtimes"]) == {"onnxruntime", "openvino"}
    assert runtimes["runtimes"]["openvino"]["top1_agreement_with_onnxruntime"] >= 0.75


def test_bad_openvino_requests_are_one_error_line(tiny_onnx):
    assert_user_error(["bench", tiny_onnx, "--runtime", "openvino", "--device", "cuda"],
                      "OpenVINO runs here on the CPU only")
    assert_user_error(["bench", tiny_onnx, "--runtime", "openvino", "--provider", "tensorrt"],
                      "--provider tensorrt is ONNX Runtime's")
    with pytest.raises(UserError, match="bench.runtime openvino times on the CPU"):
        choose_stage_runtime("cuda:0", "openvino")  # a recipe's stages on a GPU


def test_without_openvino_asking_for_it_is_one_error_line(tmp_path, tiny_onnx,
                                                         tiny_checkpoint, tiny_data,
                                                         without_openvino):
    assert_user_error(["bench", tiny_onnx, "--runtime", "openvino"],
                      "OpenVINO is not installed", "pip install -e '.[openvino]'")
    recipe = write_tiny_recipe(tmp_path / "r.yaml", tiny_checkpoint, tiny_data,
                               [{"export": {}}], bench={"runtime": "openvino"})
    assert_user_error(["run", recipe, "--out", tmp_path / "run"], "OpenVINO is not installed")


def test_without_openvino_a_run_reports_onnxruntime_alone(tmp_path, tiny_checkpoint,
                                                         tiny_data, without_openvino):
    recipe = write_tiny_recipe(tmp_path / "r.yaml", tiny_checkpoint, tiny_data,
                               [{"export": {}}], bench=COMPARED)
    code, output = run_cli(["run", recipe, "--out", tmp_path / "run"])
    assert code == 0, output
    runtimes = json.loads((tmp_path / "run" / "report.json").read_text())["runtimes"]
    assert list(runtimes["runtimes"]) == ["onnxruntime"] and runtimes["fastest"] == "onnxruntime"
    assert "OpenVINO is not installed" in runtimes["notes"][0]


needs_nncf = pytest.mark.skipif(nncf_problem() is not None,
                                reason=f"{nncf_problem()}; the NNCF path is untested here")


@needs_nncf
@pytest.mark.slow
def test_nncf_int8_is_timed_checked_and_kept_where_faster(tmp_path, tiny_checkpoint, tiny_data,
                                                          monkeypatch):
    """NNCF's INT8 file is timed against float32 by the measurer (here a stand-in that
    finds it twice as fast) and deployed; which figures keep it: test_quantize's
    test_keep_logic."""
    import filecmp
    from pathlib import Path

    from compress.measure.latency import Comparison, Latency
    from compress.pipeline.measurer import Measurer

    asked = []

    def twice_as_fast(measurer, path_a, path_b, runs=None, batch=1):
        asked.append((Path(path_a).name, Path(path_b).name, runs))
        return Comparison(Latency(1, 2.0, 2.0, runs, "stand-in"),
                          Latency(1, 1.0, 1.0, runs, "stand-in"), 2.0)

    monkeypatch.setattr(Measurer, "compare_files", twice_as_fast)
    recipe = write_tiny_recipe(tmp_path / "r.yaml", tiny_checkpoint, tiny_data, [
        {"quantize": {"quantizer": "nncf", "calibration_images": 8, "timing_runs": 10,
                      "min_speedup": 1.0, "min_agreement": 0.0}}])
    code, output = run_cli(["run", recipe, "--out", tmp_path / "run"])
    assert code == 0, output
    stage = json.loads((tmp_path / "run" / "report.json").read_text())["stages"][1]
    result = stage["result"]
    assert "NNCF" in result["calibrated_on"]
    assert result["int8_ops"].get("QuantizeLinear", 0) > 0  # NNCF's QDQ file
    assert asked == [("model_fp32.onnx", "model_int8.onnx", 10)]
    assert result["int8_speedup_vs_float32_b1"] == 2.0 and result["kept"] == "int8"
    deployed = Path(stage["onnx"])
    assert filecmp.cmp(deployed, deployed.with_name("model_int8.onnx"))
    assert result["note"].startswith("INT8 kept: 2.00x the float32 speed at batch 1")


def test_bad_nncf_requests_are_one_error_line(tmp_path, tiny_checkpoint, tiny_data,
                                              monkeypatch):
    dynamic = write_tiny_recipe(tmp_path / "d.yaml", tiny_checkpoint, tiny_data, [
        {"quantize": {"quantizer": "nncf", "mode": "dynamic"}}])
    assert_user_error(["run", dynamic, "--out", tmp_path / "run"], "quantizer nncf",
                      "mode: dynamic")
    monkeypatch.setitem(sys.modules, "nncf", None)  # as on a machine without the extra
    missing = write_tiny_recipe(tmp_path / "m.yaml", tiny_checkpoint, tiny_data, [
        {"quantize": {"quantizer": "nncf"}}])
    assert_user_error(["run", missing, "--out", tmp_path / "run"], "NNCF",
                      "pip install -e '.[openvino]'")
    assert not (tmp_path / "run").exists()

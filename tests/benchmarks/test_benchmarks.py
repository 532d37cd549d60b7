"""The benchmark scripts (peers in its quick mode, train_speed, compare_runs,
latency_budget, runtimes, ...) on a tiny checkpoint and folder, so that none of them can rot."""

from __future__ import annotations

import importlib.util
import json
import runpy
import shutil
import statistics
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, write_tiny_recipe

from compress.checkpoint import load_checkpoint

# Each test starts a benchmark script in an interpreter of its own (torch imported anew) and
# runs it end to end: CI runs them, the edit-test loop (-m "not slow") leaves them out.
# Run by .ci/run after the suite, or with -m benchmark_scripts (see pyproject.toml).
pytestmark = [pytest.mark.slow, pytest.mark.benchmark_scripts]

METHODS = ["default recipe", "unstructured L1 30 %", "torch-pruning uniform L2",
           "Tucker alone (VBMF)", "ORT INT8 static alone"]


def in_process(monkeypatch, capsys, script: str, *args) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of benchmarks/SCRIPT run as `python SCRIPT ARGS` would,
    in this process: for what ends before a model is timed or trained (bad arguments) or
    only reads files, where starting an interpreter would be most of the cost."""
    from compress.stages import registry

    capsys.readouterr()
    # A stage a script registers (peers' unstructured_l1) stays out of the suite's registry.
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(sys, "argv", [script, *map(str, args)])
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    code = 0
    try:
        runpy.run_path(str(REPO / "benchmarks" / script), run_name="__main__")
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    if isinstance(code, str):  # SystemExit("message"): printed to stderr, exit status 1
        code, err = 1, err + code + "\n"
    return code or 0, out, err


def test_peers_quick_mode_measures_every_method(tmp_path, tiny_checkpoint, tiny_data,
                                                 monkeypatch, capsys):
    recipe = {
        "checkpoint": str(tiny_checkpoint),
        "data": {"root": str(tiny_data), "batch_size": 8, "num_workers": 0},
        "bench": {"batch_sizes": [1], "warmup": 0, "runs": 3, "compare_runtimes": False},
        "stages": [{"prune": {"target_macs": 0.5}},
                   {"finetune": {"epochs": 3, "lr": 0.05}},
                   {"drop": {"squeeze_excite": "all"}},
                   {"finetune": {"epochs": 3, "lr": 0.05}},
                   {"quantize": {"calibration_images": 8, "timing_runs": 10}}],
    }
    path = tmp_path / "tiny_recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "peers"
    # A "from scratch" peer: any checkpoint stands in for one in quick mode.
    scratch = tmp_path / "small_net" / "last.safetensors"
    scratch.parent.mkdir()
    shutil.copy(tiny_checkpoint, scratch)
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "peers.py"),
                             "--recipe", str(path), "--data", str(tiny_data), "--out", str(out),
                             "--quick", "--runs", "10", "--rounds", "2",
                             "--from-scratch", str(scratch)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads((out / "peers.json").read_text())
    assert [m["method"] for m in report["methods"]] == METHODS + [
        "small_net from scratch", "small_net from scratch + 1 epochs"]
    as_trained, tuned = report["methods"][-2:]
    assert as_trained["macs"] == tuned["macs"] == as_trained["baseline_macs"]
    for method in report["methods"]:
        # Each method's figures are those of its own run's final stage.
        slug = "".join(c if c.isalnum() else "_" for c in method["method"].lower()).strip("_")
        final = json.loads((out / slug / "report.json").read_text())["stages"][-1]
        assert (method["macro_f1"], method["macs"]) == (final["macro_f1"], final["macs"])
        assert len(method["speedups"]) == 2  # one per timing round, the table gives the median
        assert method["speedup"] == statistics.median(method["speedups"])
        assert method["method"] in result.stdout
    assert (out / "peers.png").stat().st_size > 1000
    # The unstructured peer keeps its zeros through fine-tuning.
    unstructured = next(m for m in report["methods"] if m["method"] == METHODS[1])
    final = load_checkpoint(unstructured["onnx"].replace("model.onnx", "model.safetensors"))
    weights = torch.cat([p.flatten() for n, p in final.model.named_parameters()
                         if n.endswith("weight") and p.dim() > 1])
    assert (weights == 0).float().mean() >= 0.29
    # Uniform pruning was aimed at the default recipe's MACs.
    default, uniform = report["methods"][0], report["methods"][2]
    assert uniform["macs"] <= 1.1 * default["macs"]

    # --reuse takes a finished peer from an earlier --out when checkpoint, seed and epochs
    # match, and refuses one that does not before anything runs.
    peers = [sys.executable, str(REPO / "benchmarks" / "peers.py"), "--recipe", str(path),
             "--data", str(tiny_data), "--quick", "--runs", "4", "--rounds", "1",
             "--only", METHODS[2], "--reuse", f"{METHODS[2]}={out / 'torch_pruning_uniform_l2'}"]
    reused = subprocess.run(peers + ["--out", str(tmp_path / "reused")], capture_output=True,
                            text=True)
    assert reused.returncode == 0, reused.stderr[-2000:]
    second = json.loads((tmp_path / "reused" / "peers.json").read_text())["methods"]
    assert [m["method"] for m in second] == [METHODS[0], METHODS[2]]
    assert second[1]["reused_from"].endswith("torch_pruning_uniform_l2")
    assert second[1]["macro_f1"] == uniform["macro_f1"]
    arguments = peers[2:]  # refused before anything runs: in this process
    code, _, err = in_process(monkeypatch, capsys, "peers.py", *arguments, "--out",
                              tmp_path / "refused", "--set", "seed=7")
    assert code == 2 and "its seed is" in err, err
    assert not (tmp_path / "refused").exists()
    code, _, err = in_process(monkeypatch, capsys, "peers.py", *arguments, "--out",
                              tmp_path / "refused", "--reuse", f"Tucker alone (VBMF)={out}")
    assert code == 2 and "not a method of this run" in err, err
    code, _, err = in_process(monkeypatch, capsys, "peers.py", *arguments, "--out",
                              tmp_path / "refused", "--from-scratch",
                              tmp_path / "absent.safetensors")
    assert code == 2 and err.startswith("error: --from-scratch"), err
    assert not (tmp_path / "refused").exists()

    # benchmarks/seed_table.py over two runs: this one, and a copy whose default recipe
    # scored 2 points less, so uniform's mean paired difference grows by 1 point.
    difference = 100 * (uniform["macro_f1"] - default["macro_f1"]) + 1
    again = tmp_path / "again"
    again.mkdir()
    report["methods"][0]["macro_f1"] -= 0.02
    (again / "peers.json").write_text(json.dumps(report))
    code, table, err = in_process(monkeypatch, capsys, "seed_table.py", out, again)
    assert code == 0, err
    row = next(line for line in table.splitlines() if line.startswith(f"| {METHODS[2]} |"))
    assert f"| {difference:+.2f} points |" in row
    code, _, err = in_process(monkeypatch, capsys, "seed_table.py", tmp_path / "nothing")
    assert code == 2 and "no peers.json" in err




def test_train_speed_times_both_layouts(tiny_checkpoint):
    """benchmarks/train_speed.py on a tiny model, one step each, so that it cannot rot."""
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_speed.py"),
                             str(tiny_checkpoint), "--teacher", str(tiny_checkpoint),
                             "--batch", "4", "--steps", "1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "teacher: yes" in result.stdout
    for line in ("contiguous", "channels_last", "channels-last speed-up:"):
        assert line in result.stdout


def test_compare_runs_tells_identical_runs_from_different_ones(tmp_path, tiny_checkpoint,
                                                               tiny_data, monkeypatch, capsys):
    import compress

    recipe = write_tiny_recipe(tmp_path / "recipe.yaml", tiny_checkpoint, tiny_data,
                               [{"prune": {"ratio": 0.3}}, {"finetune": {"epochs": 1}}])
    for name, ratio in (("a", 0.3), ("b", 0.3), ("c", 0.5)):
        compress.run(recipe, tmp_path / name, overrides=[f"stages.0.ratio={ratio}"],
                     echo=lambda line: None)
    code, same, _ = in_process(monkeypatch, capsys, "compare_runs.py", tmp_path / "a",
                               tmp_path / "b")
    assert code == 0 and same.strip().endswith("identical"), same
    code, other, _ = in_process(monkeypatch, capsys, "compare_runs.py", tmp_path / "a",
                                tmp_path / "c")
    assert code == 1 and "1:prune" in other and " NO" in other


def test_runtimes_times_every_file_in_both_runtimes(tmp_path, tiny_checkpoint, tiny_data):
    # Installed or not, without importing them: OpenVINO and NNCF stay out of the suite's
    # process (an ONNX Runtime quantisation after OpenVINO had run in a process crashed it).
    for extra in ("openvino", "nncf"):
        if importlib.util.find_spec(extra) is None:
            pytest.skip(f"the openvino extra ({extra}) is not installed")
    out = tmp_path / "runtimes.json"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "runtimes.py"),
                             f"tiny={tiny_checkpoint}", "--data", str(tiny_data), "--runs", "5",
                             "--warmup", "0", "--json", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [(row["precision"], row["runtime"]) for row in rows] == [
        (precision, runtime) for precision in ("float32", "INT8 ORT", "INT8 NNCF")
        for runtime in ("onnxruntime", "openvino")]
    for row in rows:
        assert row["b1"]["median_ms"] > 0 and row["b8"]["speedup"] > 0, row
        assert 0 <= row["top1_agreement"] <= 1
        assert f"{row['b1']['median_ms']:.3f}" in result.stdout
    assert rows[0]["b1"]["speedup"] == 1.0 and rows[0]["top1_agreement"] == 1.0


def test_suite_times_sums_a_junit_file_by_folder(tmp_path, monkeypatch, capsys):
    junit = tmp_path / "suite.xml"
    junit.write_text('<testsuites><testsuite>'
                     '<testcase classname="tests.stages.test_plan" name="a" time="2.5"/>'
                     '<testcase classname="tests.stages.test_plan" name="b" time="1.5"/>'
                     '<testcase classname="tests.test_fileio" name="c" time="1.0"/>'
                     '</testsuite></testsuites>')
    code, out, err = in_process(monkeypatch, capsys, "suite_times.py", junit, "--files", 1)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1].split() == ["tests/stages", "2", "4.0", "80.0%"]
    assert lines[2].split() == ["tests", "(top)", "1", "1.0", "20.0%"]
    assert lines[3].split() == ["total", "3", "5.0"]
    assert lines[4].split() == ["tests/stages/test_plan.py", "4.0"]
    junit.write_text("not xml")
    code, _, err = in_process(monkeypatch, capsys, "suite_times.py", junit)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_split_resolution_prices_one_image_on_each_split(tmp_path, tiny_data, monkeypatch,
                                                         capsys):
    from conftest import run_cli, write_train_yamls

    spec = importlib.util.spec_from_file_location(
        "split_resolution", REPO / "benchmarks" / "split_resolution.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Class 0: precision 1, recall 1/2 (F1 2/3); class 1: 2/3, 1 (F1 4/5); the one wrong
    # image made right gives F1 1 for both: macro 11/15 -> 1.
    base, overall, by_class = module.one_image_rise(
        np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2)
    assert base == pytest.approx(11 / 15) and overall == pytest.approx(4 / 15)
    assert by_class == {0: pytest.approx(4 / 15)}
    model_yaml, data_yaml = write_train_yamls(tmp_path, tiny_data, CALIBRATION_RATIO=0.25)
    code, output = run_cli(["train", "--model", model_yaml, "--data", data_yaml, "--out",
                            tmp_path / "trained"])
    assert code == 0, output
    trained = tmp_path / "trained" / "last.safetensors"
    code, out, err = in_process(monkeypatch, capsys, "split_resolution.py", trained,
                                "--data", tiny_data)
    assert code == 0, err
    val_line, held_line = out.strip().splitlines()
    val_count = sum(1 for path in (tiny_data / "val").rglob("*") if path.is_file())
    assert val_line.startswith(f"val: {val_count} images")
    held_out = load_checkpoint(trained).held_out_files
    assert held_line.startswith(f"held-out: {len(held_out)} images")
    # The macro F1 printed is the model's on val, as the training engine measured it.
    last = json.loads((tmp_path / "trained" / "history.json").read_text())[-1]
    assert f"macro F1 {last['val_macro_f1']:.4f}" in val_line


def test_plan_timing_noise_times_each_length_and_thread_count_in_alternation(tiny_checkpoint):
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "plan_timing_noise.py"),
                             "--repeats", "2", "--runs", "10,20", "--threads", "default,1",
                             "--reference", str(tiny_checkpoint), "--model",
                             str(tiny_checkpoint)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    settings = ["10 runs, default threads", "10 runs, 1 thread(s)", "20 runs, default threads",
                "20 runs, 1 thread(s)"]
    assert [line.split(":")[0] for line in lines[:8]] == [
        f"repeat {repeat}, {setting}" for repeat in (1, 2) for setting in settings]
    assert all(" ms, model " in line for line in lines[:8])
    # The same file against itself: about 1x at each length and thread count.
    for setting, line in zip(settings, lines[8:]):
        assert line.startswith(f"{setting}: median ")
        assert 0.5 < float(line.split("median ")[1].split("x")[0]) < 2.0
    assert len(lines) == 12

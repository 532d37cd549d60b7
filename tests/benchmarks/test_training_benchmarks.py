"""The training and planning benchmark scripts (latency_budget, recovery, teacher_forward) on
a tiny checkpoint and folder, so that none of them can rot; a file of its own so that the
suite's workers take it beside tests/benchmarks/test_benchmarks.py."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, write_tiny_recipe

from compress.checkpoint import load_checkpoint

# Run by .ci/run after the suite, or with -m benchmark_scripts (see pyproject.toml).
pytestmark = [pytest.mark.slow, pytest.mark.benchmark_scripts]


def test_latency_budget_runs_the_grid_against_the_teacher_and_rereads_finished_runs(
        tmp_path, tiny_checkpoint, tiny_data, monkeypatch):
    monkeypatch.setenv("COMPRESS_CACHE_DIR", str(tmp_path / "cache"))
    # A loose tolerance: the tiny model's time is mostly overhead, and this checks the
    # script, not the plan (tests/stages/test_plan.py does).
    # The plan second, as in recipes/mnv3_latency.yaml: --targets sets that stage's target;
    # relative to the recipe's teacher, as in recipes/mnv3_small_latency.yaml.
    recipe = write_tiny_recipe(tmp_path / "recipe.yaml", tiny_checkpoint, tiny_data, [
        {"prune": {"ratio": 0.25}},
        {"plan": {"target_speedup": 1.05, "tolerance": 0.45, "kinds": ["prune"],
                  "prune_ratios": [0.5], "timing_runs": 10, "relative_to": "teacher"}},
        {"finetune": {"epochs": 1, "distill": {}}}], teacher=str(tiny_checkpoint))
    command = [sys.executable, str(REPO / "benchmarks" / "latency_budget.py"), "--recipe",
               str(recipe), "--data", str(tiny_data), "--out", str(tmp_path / "grid"),
               "--targets", "1.05", "--seeds", "1,2", "--runs", "10", "--rounds", "1",
               "--plot", str(tmp_path / "curve.png"), "--set", "bench.runs=4"]
    first = subprocess.run(command, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "against the recipe's teacher" in first.stdout
    rows = [line for line in first.stdout.splitlines() if line.startswith("x1.05 seed")]
    assert len(rows) == 2 and all("re-timed" in row and "val macro F1" in row for row in rows)
    assert [row.split(":")[0] for row in rows] == ["x1.05 seed 1", "x1.05 seed 2"]
    assert "over 2 seed(s)" in first.stdout
    run_recipe = yaml.safe_load((tmp_path / "grid" / "x1.05_s1" / "recipe.yaml").read_text())
    assert run_recipe["stages"][1]["plan"]["target_speedup"] == 1.05
    assert run_recipe["bench"]["runs"] == 4  # --set reached it
    assert (tmp_path / "curve.png").stat().st_size > 1000
    assert (tmp_path / "grid" / "reference" / "report.json").is_file()
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.count("earlier (re-read)") == 2, again.stdout


def test_recovery_runs_each_arm_and_seed_once_and_reports_paired_differences(
        tmp_path, tiny_data):
    """The arms on a checkpoint that records held-out images, two seeds; a second
    invocation reads every run back instead of training it again."""
    from conftest import run_cli, write_train_yamls

    model_yaml, data_yaml = write_train_yamls(tmp_path, tiny_data, CALIBRATION_RATIO=0.25)
    code, output = run_cli(["train", "--model", model_yaml, "--data", data_yaml, "--out",
                            tmp_path / "start"])
    assert code == 0, output
    start = tmp_path / "start" / "last.safetensors"
    assert load_checkpoint(start).held_out_split is not None
    command = [sys.executable, str(REPO / "benchmarks" / "recovery.py"), "--out",
               str(tmp_path / "recovery"), "--start", str(start), "--teacher", str(start),
               "--data", str(tiny_data), "--arms", "today,fm_cos_ema,peer_fm_cos_ema",
               "--seeds", "1,2", "--epochs", "1", "--peer-data", str(data_yaml),
               "--peer-start-epochs", "1"]
    first = subprocess.run(command, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    results = sorted((tmp_path / "recovery" / "results").glob("*.json"))
    assert [path.stem for path in results] == [
        "fm_cos_ema-1ep-seed1", "fm_cos_ema-1ep-seed2", "peer_fm_cos_ema-1ep-seed1",
        "peer_fm_cos_ema-1ep-seed2", "today-1ep-seed1", "today-1ep-seed2"]
    for path in results:
        row = json.loads(path.read_text())
        assert 0 <= row["held_out_macro_f1"] <= 1 and 0 <= row["val_macro_f1"] <= 1
        assert row["start_sha256"] == hashlib.sha256(start.read_bytes()).hexdigest()
        # The epoch `--keep best` keeps: the first with the best held-out F1, and its val F1.
        history = json.loads((tmp_path / "recovery" / "runs" / path.stem / "train" /
                              "history.json").read_text())
        best = max(history, key=lambda epoch: epoch["held_out_macro_f1"])
        assert (row["best_held_out_epoch"], row["val_macro_f1_at_best_held_out"]) == \
            (best["epoch"], best["val_macro_f1"])
    ema_run = load_checkpoint(tmp_path / "recovery" / "runs" / "fm_cos_ema-1ep-seed1" /
                              "finetuned.safetensors").info["finetune"]
    assert ema_run["recovery"]["ema"] == 0.998 and ema_run["distill"]["mode"] == \
        "function_matching"
    # The peer: mobilenet_v3_small from scratch for the start's epochs and the arm's, held
    # out of the very images the start was, whatever its seed.
    peer = load_checkpoint(tmp_path / "recovery" / "runs" / "peer_fm_cos_ema-1ep-seed2" /
                           "train" / "last.safetensors")
    assert peer.model_spec["name"] == "mobilenet_v3_small"
    assert peer.info["train"]["epochs"] == 2 and peer.info["train"]["seed"] == 2
    assert peer.held_out_files == load_checkpoint(start).held_out_files
    line = next(line for line in first.stdout.splitlines() if line.startswith("| fm_cos_ema"))
    assert "| 1 | 2 |" in line and "(" in line.split("|")[-2]  # a paired difference, its CI
    stamps = [path.stat().st_mtime_ns for path in results]
    again = subprocess.run(command + ["--plot", str(tmp_path / "curves.png")],
                           capture_output=True, text=True)
    assert again.returncode == 0 and "seed1: " not in again.stdout, again.stdout
    assert [path.stat().st_mtime_ns for path in results] == stamps
    assert line in again.stdout  # the same table from the files
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    # The result files alone give the table and the curves (a results folder carried to
    # another machine without its runs), and a figure missing from one (written before the
    # figure existed) is derived again from the history it holds.
    row = json.loads(results[0].read_text())
    del row["val_macro_f1_at_best_held_out"]
    results[0].write_text(json.dumps(row))
    shutil.rmtree(tmp_path / "recovery" / "runs")
    (tmp_path / "curves.png").unlink()
    carried = subprocess.run(command + ["--report", "--plot", str(tmp_path / "curves.png")],
                             capture_output=True, text=True)
    assert carried.returncode == 0, carried.stderr[-2000:]
    assert line in carried.stdout and (tmp_path / "curves.png").stat().st_size > 10_000
    assert "(6 runs)" in carried.stdout
    # --arms picks the runs drawn.
    today_only = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "recovery.py"), "--out",
         str(tmp_path / "recovery"), "--arms", "today", "--report", "--plot",
         str(tmp_path / "today.png")], capture_output=True, text=True)
    assert today_only.returncode == 0 and "(2 runs)" in today_only.stdout, today_only.stderr
    assert "val_macro_f1_at_best_held_out" in json.loads(results[0].read_text())
    # A start made by a recipe's stages up to its plan (the ones after it are left out);
    # the *_uncut arms distil from the recipe's checkpoint, the others from --teacher.
    recipe = write_tiny_recipe(tmp_path / "plan.yaml", start, tiny_data, [
        {"prune": {"ratio": 0.25}},
        {"plan": {"target_speedup": 1.05, "tolerance": 0.45, "kinds": ["prune"],
                  "prune_ratios": [0.5], "timing_runs": 10}},
        {"finetune": {"epochs": 1}}])
    teacher = tmp_path / "teacher.safetensors"
    shutil.copy(start, teacher)
    planned = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "recovery.py"), "--out",
         str(tmp_path / "planned"), "--plan-recipe", str(recipe), "--teacher", str(teacher),
         "--data", str(tiny_data), "--arms", "today,kd_cos_ema_uncut", "--seeds", "1",
         "--epochs", "1"],
        capture_output=True, text=True)
    assert planned.returncode == 0, planned.stdout[-2000:] + planned.stderr[-2000:]
    both = subprocess.run(command + ["--plan-recipe", str(recipe)], capture_output=True,
                          text=True)
    assert both.returncode != 0 and "give one" in both.stderr
    teachers = {arm: json.loads((tmp_path / "planned" / "results" / f"{arm}-1ep-seed1.json")
                                .read_text())["teacher"] for arm in ("today", "kd_cos_ema_uncut")}
    assert teachers == {"today": str(teacher), "kd_cos_ema_uncut": str(start)}
    stages = sorted(path.name for path in (tmp_path / "planned" / "start" / "stages").iterdir())
    assert stages == ["00-input", "01-prune", "02-plan"]
    plan = load_checkpoint(tmp_path / "planned" / "start" / "stages" / "02-plan" /
                           "model.safetensors")
    recovered = load_checkpoint(tmp_path / "planned" / "runs" / "today-1ep-seed1" /
                                "finetuned.safetensors")
    assert {k: v.shape for k, v in recovered.model.state_dict().items()} == \
        {k: v.shape for k, v in plan.model.state_dict().items()}
    # Another start in an OUT whose runs were measured from the first: refused, nothing
    # trained or rewritten.
    other_start = [*command]
    other_start[other_start.index("--start") + 1] = str(
        tmp_path / "planned" / "start" / "stages" / "02-plan" / "model.safetensors")
    stamps = [path.stat().st_mtime_ns for path in results]
    refused = subprocess.run(other_start, capture_output=True, text=True)
    assert refused.returncode != 0 and "measured from another start" in refused.stderr
    assert [path.stat().st_mtime_ns for path in results] == stamps


def test_teacher_forward_times_both_modes_and_compares_their_outputs(tiny_checkpoint):
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "teacher_forward.py"),
                             str(tiny_checkpoint), "--batch", "4", "--steps", "2"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no_grad: median" in result.stdout and "inference_mode: median" in result.stdout
    assert "identical outputs: True" in result.stdout

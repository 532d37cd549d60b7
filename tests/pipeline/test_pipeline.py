"""`compress run` end to end on a tiny checkpoint and folder, resume, and bad recipes."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from compress.checkpoint import Checkpoint, save_checkpoint
from compress.cli import main
from compress.models import build_model


@pytest.fixture()
def tiny_recipe(tmp_path, tiny_model_spec, tiny_data) -> Path:
    """A recipe with every stage kind over a tiny checkpoint at 32 px."""
    checkpoint = save_checkpoint(tmp_path / "tiny.safetensors", Checkpoint(
        build_model(tiny_model_spec).eval(), tiny_model_spec, ["blue", "green", "red"], 32))
    recipe = {
        "checkpoint": str(checkpoint),
        "data": {"root": str(tiny_data), "batch_size": 8, "num_workers": 0},
        "bench": {"batch_sizes": [1, 4], "warmup": 0, "runs": 3, "compare_runtimes": False},
        "stages": [
            {"prune": {"ratio": 0.25}},
            {"finetune": {"epochs": 1, "lr": 0.05}},
            {"decompose": {"ranks": "ratio", "ratio": 0.25, "min_layer_macs": 0}},
            {"finetune": {"epochs": 1, "freeze": "decomposed"}},
            {"export": {"fp16": True}},
        ],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _run(*args):
    result = CliRunner().invoke(main, ["run", *map(str, args)])
    return result.exit_code, result.output


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.mark.slow
def test_every_stage_is_saved_measured_and_reported(tmp_path, tiny_recipe):
    out = tmp_path / "run"
    code, output = _run(tiny_recipe, "--out", out)
    assert code == 0, output
    stages = _report(out)["stages"]
    assert [s["name"] for s in stages] == ["input", "prune", "finetune", "decompose",
                                           "finetune", "export"]
    for stage in stages:
        for key in ("params", "macs", "latency_ms", "speedup_vs_input", "macro_f1", "accuracy", "score",
                    "checkpoint", "onnx", "seconds"):
            assert stage[key] is not None, (stage["name"], key)
        assert Path(stage["checkpoint"]).is_file() and Path(stage["onnx"]).is_file()
        assert set(stage["latency_by_batch"]) == {"1", "4"}
    assert stages[0]["score"] == pytest.approx(1.0)  # the input is its own baseline
    assert stages[0]["speedup_vs_input"] == 1.0 and stages[1]["speedup_vs_input"] > 0
    assert stages[1]["macs"] < stages[0]["macs"] and stages[3]["macs"] < stages[2]["macs"]
    assert stages[3]["result"]["decomposed"]
    assert stages[5]["result"]["checks"]["fp16"]["top1_agreement"] >= 0.99
    speedup = stages[5]["result"]["fp16_speedup_vs_float32_b1"]
    assert stages[5]["note"].startswith("FP16 is") and f"{speedup:.2f}x" in stages[5]["note"]
    markdown = (out / "report.md").read_text()
    assert markdown.count("\n| stage |") == 1  # one stage table, a row per stage
    assert [line.split(" | ")[0] for line in markdown.splitlines()
            if re.match(r"\| \d+:", line)] == [f"| {s['index']}:{s['name']}" for s in stages]
    floor = _report(out)["distance_to_floor"]
    assert floor["stage"] == "5:export" and 0 < floor["gflops"] < floor["peak_gflops"]
    assert any("Conv" in row["op_type"] for row in floor["op_types"])
    assert "## Distance to the floor (stage 5:export, batch 1)" in (out / "report.md").read_text()
    assert (out / "report.png").stat().st_size > 1000


def test_without_data_the_data_stages_are_skipped_and_marked(tmp_path, tiny_recipe):
    out = tmp_path / "run"
    # the recipe's own data.root is absent: the no-data mode (a --data that does not exist
    # is an error instead: tests/pipeline/test_run_folder.py)
    code, output = _run(tiny_recipe, "--out", out, "--set", f"data.root={tmp_path / 'absent'}")
    assert code == 0, output
    assert "no data folder" in output and "skipped stage 2:finetune" in output
    stages = _report(out)["stages"]
    assert [s["status"] for s in stages] == ["done", "done", "skipped", "done", "skipped", "done"]
    assert all(s["macro_f1"] is None and s["score"] is None for s in stages)
    assert stages[3]["macs"] < stages[1]["macs"]
    assert "n/a" in (out / "report.md").read_text()
    # A skipped stage's row is its own: the model it passes on counted, no file of another
    # stage's, nothing timed.
    for skipped, before in ((stages[2], stages[1]), (stages[4], stages[3])):
        assert (skipped["params"], skipped["macs"]) == (before["params"], before["macs"])
        assert skipped["checkpoint"] == skipped["onnx"] == ""
        assert skipped["latency_ms"] is None and skipped["speedup_vs_input"] is None
        assert skipped["latency_by_batch"] == {}


@pytest.mark.slow
def test_resume_continues_after_the_last_finished_stage(tmp_path, tiny_recipe, monkeypatch):
    out = tmp_path / "run"
    from compress.stages.decompose import Decompose

    def interrupted(self, model, ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(Decompose, "apply", interrupted)
    code, output = _run(tiny_recipe, "--out", out)
    assert code == 130 and "resume" in output
    finished = sorted(p.parent.name for p in out.glob("stages/*/record.json"))
    assert finished == ["00-input", "01-prune", "02-finetune"]
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("stages/*/record.json")}

    code, output = _run(tiny_recipe, "--out", out)
    assert code == 2 and "--resume" in output  # nothing already written is overwritten

    monkeypatch.undo()
    code, output = _run(tiny_recipe, "--out", out, "--resume")
    assert code == 0, output
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())
    assert len(_report(out)["stages"]) == 6


def test_end_to_end_time_drives_the_score_when_asked(tmp_path, tiny_recipe):
    raw = yaml.safe_load(tiny_recipe.read_text())
    raw["stages"] = [{"prune": {"ratio": 0.25}}, {"quantize": {"calibration_images": 8,
                                                                "timing_runs": 10}}]
    raw["score"] = {"time": "end_to_end"}
    recipe = tmp_path / "e2e.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    code, output = _run(recipe, "--out", tmp_path / "run")
    assert code == 0, output
    stages = _report(tmp_path / "run")["stages"]
    assert all(s["end_to_end_s"] > 0 for s in stages)
    for stage in stages:
        time_term = 0.5 * stage["end_to_end_s"] / stages[0]["end_to_end_s"]
        f1_term = 1 / (1 + math.exp(-20 * (stages[0]["macro_f1"] - stage["macro_f1"])))
        assert stage["score"] == pytest.approx(time_term + f1_term)
    quantize = stages[2]
    assert quantize["result"]["kept"] in ("int8", "float32")
    assert quantize["note"] and quantize["note"] in output


def test_resize_changes_the_input_size_of_every_later_stage(tmp_path, tiny_recipe):
    raw = yaml.safe_load(tiny_recipe.read_text())
    raw["stages"] = [{"resize": {"input_size": 24}}, {"finetune": {"epochs": 1, "lr": 0.05}},
                     {"export": {}}]
    recipe = tmp_path / "resize.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    code, output = _run(recipe, "--out", out)
    assert code == 0, output
    stages = _report(out)["stages"]
    assert [s["input_size"] for s in stages] == [32, 24, 24, 24]
    assert stages[1]["macs"] < 0.6 * stages[0]["macs"]  # (24/32)^2 = 0.5625
    assert stages[2]["result"]["val_macro_f1"] == pytest.approx(stages[2]["macro_f1"],
                                                                 abs=1e-6)
    from compress.checkpoint import load_checkpoint
    from compress.measure.runners import OrtRunner

    assert load_checkpoint(stages[3]["checkpoint"]).input_size == 24
    assert OrtRunner.open(stages[3]["onnx"]).input_size() == 24
    code, output = _run(recipe, "--out", out, "--resume")  # resumes at the new size
    assert code == 0, output


def test_set_overrides_a_stage_option(tmp_path, tiny_recipe):
    from compress.recipe.loading import load_recipe

    recipe = load_recipe(tiny_recipe, ["stages.1.epochs=3", "bench.runs=7"])
    assert recipe.stages[1]["finetune"]["epochs"] == 3 and recipe.bench.runs == 7


@pytest.mark.parametrize("edit, fragments", [
    (lambda r: r["stages"].append({"quantum": {}}), ["stages.5", "unknown stage 'quantum'"]),
    (lambda r: r["stages"][0]["prune"].update(ratio=1.5), ["stages.0.prune.ratio", "between 0 and 1"]),
    (lambda r: r["stages"][0]["prune"].update(colour="red"), ["stages.0.prune.colour",
                                                              "unknown key"]),
    (lambda r: r["stages"][1]["finetune"].update(epochs="many"), ["stages.1.finetune.epochs"]),
    (lambda r: r["stages"][1]["finetune"].update(freeze="half"), ["stages.1.finetune.freeze"]),
    (lambda r: r.update(checkpoint="nope.safetensors"), ["checkpoint", "not found"]),
    (lambda r: r.update(teacher="nope.safetensors"), ["teacher: file", "not found"]),
    (lambda r: r.update(teacher=r["data"]["root"] + "/train/blue/blue0.png"),
     ["teacher: ", "blue0.png: refused, neither a compress checkpoint nor a torch file"]),
    (lambda r: r.update(colour=1), ["colour", "unknown key"]),
    (lambda r: r["stages"][2]["decompose"].update(ranks="map", rank_map={"model.4.conv": 999}),
     ["stages.2.decompose", "larger than the layer"]),
])
def test_bad_recipes_fail_before_any_work(tmp_path, tiny_recipe, edit, fragments):
    raw = yaml.safe_load(tiny_recipe.read_text())
    edit(raw)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    code, output = _run(bad, "--out", tmp_path / "run")
    assert code == 2, output
    line, = output.strip().splitlines()
    assert line.startswith("error: recipe ") and "bad.yaml" in line
    for fragment in fragments:
        assert fragment in line
    assert not (tmp_path / "run" / "stages").exists()


def test_a_teacher_must_predict_the_inputs_classes(tmp_path, tiny_recipe, tiny_model_spec):
    raw = yaml.safe_load(tiny_recipe.read_text())
    raw["teacher"] = str(save_checkpoint(tmp_path / "other.safetensors", Checkpoint(
        build_model(tiny_model_spec).eval(), tiny_model_spec, ["red", "green", "blue"], 32)))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    code, output = _run(bad, "--out", tmp_path / "run")
    line, = output.strip().splitlines()
    assert code == 2 and "teacher: " in line, output
    assert "other.safetensors: its classes ['red', 'green', 'blue'] are not the input's" in line

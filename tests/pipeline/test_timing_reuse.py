"""A stage whose model is the previous stage's (a decomposition that found nothing worth
decomposing) keeps that stage's timing: timing the same ONNX graph again would only report
the machine's noise as a speed-up of its own (seen: 4.13x and then 2.74x for one model)."""

from __future__ import annotations

import json

from conftest import run_cli, write_tiny_recipe


def test_a_stage_that_changed_nothing_keeps_the_previous_timing(tmp_path, tiny_checkpoint,
                                                                tiny_data):
    recipe = write_tiny_recipe(tmp_path / "recipe.yaml", tiny_checkpoint, tiny_data, [
        {"prune": {"ratio": 0.25}},
        {"decompose": {"ranks": "ratio", "ratio": 0.5, "min_layer_macs": 10 ** 12}},
        {"prune": {"ratio": 0.25}}])
    code, output = run_cli(["run", recipe, "--out", tmp_path / "run"])
    assert code == 0, output
    _, pruned, unchanged, pruned_again = json.loads(
        (tmp_path / "run" / "report.json").read_text())["stages"]
    assert unchanged["params"] == pruned["params"] and unchanged["macs"] == pruned["macs"]
    assert unchanged["timing_from"] == 1 and "the same ONNX graph as stage 1" in \
        unchanged["note"]
    for key in ("latency_ms", "latency_p90_ms", "speedup_vs_input", "latency_by_batch"):
        assert unchanged[key] == pruned[key], key
    assert not unchanged["slower"]
    assert pruned_again["timing_from"] is None  # a changed model is timed anew
    assert pruned_again["macs"] < unchanged["macs"]

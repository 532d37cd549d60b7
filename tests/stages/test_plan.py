"""The latency-budget plan: its options, the latency table (measured, cached per device
fingerprint), the greedy choice, and the stage meeting a measured budget on a small model."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli, stage_context, write_tiny_recipe

from compress.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from compress.measure.macs import count_macs
from compress.models import build_model
from compress.measure.parity import check_parity
from compress.ops.onnx_export import export_onnx
from compress.planning.choose import Priced, choose, monotone_shares, repriced
from compress.planning.latency_table import LatencyTable
from compress.planning.options import Option, apply_options, candidate_options
from compress.stages.registry import create_stage

# Wide enough that its cuts move the time well above the timing noise, small enough for CI.
SMALL = {"kind": "torchvision", "name": "mobilenet_v3_small", "num_classes": 3,
         "kwargs": {"width_mult": 1.0}}
SIZE = 96


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESS_CACHE_DIR", str(tmp_path / "cache"))


def _model():
    torch.manual_seed(0)
    return build_model(SMALL).eval()


def test_options_cover_every_kind_and_apply_together():
    model = _model()
    options = candidate_options(model, SIZE, ["prune", "low_rank", "squeeze_excite",
                                              "residual_block"], [0.5], [0.25],
                                min_layer_share=0.01)
    kinds = {o.kind for o in options}
    assert kinds == {"prune", "low_rank", "squeeze_excite", "residual_block"}
    block, inside = next((b, o) for b in options if b.kind == "residual_block"
                         for o in options if o.kind == "squeeze_excite"
                         and o.target.startswith(b.target + "."))
    assert block.excludes(inside) and inside.excludes(block)
    chosen = [next(o for o in options if o.kind == kind) for kind in ("prune", "low_rank")]
    chosen.append(block)
    changed = apply_options(model, chosen, SIZE)
    assert count_macs(changed, SIZE) < count_macs(model, SIZE)
    assert changed(torch.randn(2, 3, SIZE, SIZE)).shape == (2, 3)
    assert count_macs(model, SIZE) == count_macs(_model(), SIZE)  # the input is untouched


def test_choose_takes_the_cheapest_saving_per_point_and_one_option_per_place():
    a25, a75 = Option("prune", "a", 0.25), Option("prune", "a", 0.75)
    block, inside = Option("residual_block", "b"), Option("low_rank", "b.conv", 0.25)
    priced = [Priced(a25, 0.10, 0.01), Priced(a75, 0.30, 0.20),
              Priced(block, 0.25, 0.02), Priced(inside, 0.05, 0.0)]
    chosen, total, exhausted = choose(priced, 0.30)
    # Free first (inside: 0.05); then the block, which replaces the cut inside it (+0.20
    # for 0.02 F1: 0.1 a unit saved, tied with a25 and the larger step); then a25.
    assert [p.option for p in chosen] == [block, a25] and total == pytest.approx(0.35)
    assert not exhausted
    chosen, total, exhausted = choose(priced, 0.9)  # more than every option can give
    assert exhausted and total < 0.9 and len({p.option.place for p in chosen}) == len(chosen)


def test_a_cut_inside_a_plan_costs_at_least_what_it_costs_alone():
    ruinous, cheap, untouched = (Option("prune", "a", 0.75), Option("prune", "b", 0.25),
                                 Option("residual_block", "c"))
    priced = [Priced(ruinous, 0.2, 0.30), Priced(cheap, 0.1, 0.01), Priced(untouched, 0.3, 0.05)]
    # Inside a plan at chance level leaving the ruinous cut out changes nothing (0.0): it
    # stays at its 0.30 alone; the cheap one, ruinous together with the others, goes up.
    corrected = repriced(priced, 0.5, {ruinous: 0.0, cheap: 0.12})
    assert [p.f1_drop for p in corrected] == pytest.approx([0.30, 0.12, 0.05])
    assert [p.saved for p in corrected] == pytest.approx([0.1, 0.05, 0.15])
    chosen, _, _ = choose(corrected, 0.1)
    assert [p.option for p in chosen] == [untouched]


def test_a_larger_cut_of_a_place_is_priced_at_least_as_saving_as_a_smaller_one():
    noisy = [Priced(Option("prune", "a", 0.25), 0.10, 0.0),
             Priced(Option("prune", "a", 0.75), 0.04, 0.1),
             Priced(Option("low_rank", "c", 0.5), 0.08, 0.0),  # keeps more: the smaller cut
             Priced(Option("low_rank", "c", 0.25), 0.02, 0.0),
             Priced(Option("prune", "b", 0.25), 0.01, 0.0),
             Priced(Option("prune", "b", 0.5), 0.05, 0.0),
             Priced(Option("prune", "b", 0.75), 0.03, 0.0)]
    # Shares out of order are pooled to their mean (not raised to the largest: the maximum
    # of noisy timings overstates); shares in order stay as timed.
    assert [p.saved for p in monotone_shares(noisy)] == pytest.approx(
        [0.07, 0.07, 0.05, 0.05, 0.01, 0.04, 0.04])


def test_a_set_saving_is_split_over_its_options_by_the_macs_they_remove():
    from compress.planning.latency_table import split_set_savings

    sets = {"prune:0.5": ["a", "b"], "squeeze_excite:1": ["g1", "g2"], "slower": ["c"]}
    shares = split_set_savings(sets, {"prune:0.5": 0.30, "squeeze_excite:1": 0.10,
                                      "slower": -0.02},
                               {"a": 0.15, "b": 0.05, "g1": 0.0, "g2": 0.0, "c": 0.1})
    # By MACs removed; evenly where none are removed; nothing from a set that measured slower.
    assert shares == pytest.approx({"a": 0.225, "b": 0.075, "g1": 0.05, "g2": 0.05, "c": 0.0})


def test_latency_table_measures_a_real_saving_and_is_reused_per_device(tmp_path):
    from compress.pipeline.measurer import Measurer
    from compress.planning.timing import PlanTiming
    from compress.recipe.schema import BenchSection, DataSection, ScoreSection

    model = _model()
    measurer = Measurer(BenchSection(), ScoreSection(), DataSection(), None,
                        torch.device("cpu"), SIZE)
    timing = PlanTiming(measurer, SIZE, tmp_path,
                        export_onnx(model, tmp_path / "input.onnx", SIZE), 1, 200)
    # Every group at 0.75: a saving far above the timing noise of a busy machine (three
    # groups saved 15 % in one CI sitting whose control copy deviated by 9 %).
    heavy = apply_options(model, candidate_options(model, SIZE, ["prune"], [0.75], []), SIZE)
    (saved, none_saved), noise = timing.shares_saved([heavy, model])
    assert saved > 0.3 and saved > 2 * noise, (saved, noise)  # a cut that removes work
    assert abs(none_saved) < max(0.1, 3 * noise)  # the same model saves nothing

    fingerprint = measurer.device_fingerprint()
    table = LatencyTable.open(fingerprint, "arch")
    table.record({"prune:x:0.5": saved}, noise)
    again = LatencyTable.open(fingerprint, "arch")
    assert again.missing(["prune:x:0.5", "prune:y:0.5"]) == ["prune:y:0.5"]
    assert again.saved["prune:x:0.5"] == saved and again.noise == [noise]
    other_device = LatencyTable.open({**fingerprint, "threads": fingerprint["threads"] + 1},
                                     "arch")
    assert other_device.missing(["prune:x:0.5"]) == ["prune:x:0.5"]
    assert other_device.path != again.path
    assert LatencyTable.open(fingerprint, "other architecture").missing(["prune:x:0.5"])


def test_plan_meets_a_measured_budget_and_reuses_its_table(tmp_path, tiny_data):
    from compress.data.training_data import open_training_data

    model = _model()
    data = open_training_data(tiny_data, ["blue", "green", "red"], SIZE, batch_size=8,
                              num_workers=0)
    stage = create_stage("plan", {"target_speedup": 1.6, "kinds": ["prune", "residual_block"],
                                  "prune_ratios": [0.75], "timing_runs": 60})
    results = []
    for attempt in range(2):  # the second with data: F1 prices, the same latency table
        ctx = stage_context(SIZE, ["blue", "green", "red"], torch.device("cpu"), tmp_path,
                            SMALL, teacher=model, echo=lambda line: None,
                            data=data if attempt else None)
        output = stage.apply(model, ctx)
        results.append(output.result.to_dict())
    # The planned model (pruned, blocks removed) saves, rebuilds from its data and exports.
    saved = save_checkpoint(tmp_path / "planned.safetensors",
                            Checkpoint(output.model, SMALL, ["a", "b", "c"], SIZE))
    x = torch.randn(2, 3, SIZE, SIZE)
    assert torch.allclose(load_checkpoint(saved).model.eval()(x), output.model.eval()(x),
                          atol=1e-5)
    assert check_parity(output.model, export_onnx(output.model, tmp_path / "p.onnx", SIZE),
                        x)["relative_error"] < 1e-4
    first, second = results
    for result in results:
        # Met within the tolerance, as measured by the stage's own final timing.
        assert result["speedup_vs_reference"] >= 1.6 * (1 - 0.05), result["refits"]
        assert result["chosen"] and result["macs_after"] < result["macs_before"]
    assert first["judged_on"].startswith("no data") and first["planned_macro_f1"] is None
    assert second["judged_on"] == f"{len(data.val)} val images"
    assert 0 <= second["planned_macro_f1"] <= 1 and 0 <= second["input_macro_f1"] <= 1
    assert second["summed_f1_drops"] == pytest.approx(sum(c["f1_drop"]
                                                          for c in second["chosen"]), abs=1e-4)
    # With data the plan's F1 as a whole steers: every timed plan is scored, every chosen
    # cut re-priced inside it, and of the plans that met the budget the best scored wins
    # once a second timing of it meets the budget too (within the tolerance); plans that met
    # it by at most twice the tolerance come first. Every plan ranked before the winner
    # failed that timing. The search itself counts a plan as met at the budget: the
    # tolerance is for the second timing only.
    assert all("macro_f1" in r for r in second["refits"])
    met = [r for r in second["refits"] if r["ratio"] >= 1.6]

    def rank(refit):
        return (refit["ratio"] <= refit["required_ratio"] * (1 + 2 * 0.05), refit["macro_f1"])

    winner = next(r for r in met if r["macro_f1"] == second["planned_macro_f1"])
    assert winner["confirmed_ratio"] == second["achieved_ratio"] >= 1.6 * (1 - 0.05)
    assert all(r["confirmed_ratio"] < 1.6 * (1 - 0.05)
               for r in met if rank(r) > rank(winner)), second["refits"]
    assert all(c["f1_drop_in_plan"] is not None for c in second["chosen"])
    assert all(c["f1_drop_in_plan"] is None for c in first["chosen"])
    assert first["latency_table"]["measured"] == len(first["options"])
    # Timed as two sets (every group at 0.75, every block), each far above the noise.
    assert set(first["latency_table"]["sets"]) == {"prune:0.75", "residual_block:1"}
    assert second["latency_table"]["sets"] == first["latency_table"]["sets"]
    assert second["latency_table"]["measured"] == 0
    assert second["latency_table"]["reused"] == len(second["options"])


@pytest.mark.parametrize("options, problem", [
    ({}, "target_speedup or target_latency_ms: give exactly one of them"),
    ({"target_speedup": 2.0, "target_latency_ms": 1.0}, "give exactly one of them"),
    ({"target_speedup": 1.0}, "target_speedup: Input should be greater than 1"),
    ({"target_latency_ms": -1}, "target_latency_ms: Input should be greater than 0"),
    ({"target_speedup": True}, "target_speedup: expected a number, not true"),
    ({"target_speedup": 2.0, "kinds": []}, "kinds: give each of"),
    ({"target_speedup": 2.0, "kinds": ["prune", "prune"]}, "kinds: give each of"),
    ({"target_speedup": 2.0, "kinds": ["fuse"]}, "kinds.0"),
    ({"target_speedup": 2.0, "prune_ratios": [1.5]}, "prune_ratios: give values between"),
    ({"target_speedup": 2.0, "batch_size": 0}, "batch_size"),
    ({"target_speedup": 2.0, "ignore": ["no.such.layer"]}, "no module named no.such.layer"),
])
def test_plan_options_are_validated_before_any_work(tmp_path, tiny_checkpoint, tiny_data,
                                                    options, problem):
    recipe = write_tiny_recipe(tmp_path / "recipe.yaml", tiny_checkpoint, tiny_data,
                               [{"plan": options}])
    code, output = run_cli(["run", recipe, "--out", tmp_path / "run"])
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), output
    assert "stages.0.plan" in lines[0] and problem in lines[0], lines[0]
    assert not (tmp_path / "run").exists()


def test_a_plan_relative_to_the_teacher_times_the_input_against_it(tmp_path, tiny_data):
    """A small model trained from scratch, compressed to N times faster than the large
    baseline: the recipe's teacher is the reference, so the input's own head start counts."""
    classes = ["blue", "green", "red"]
    narrow = SMALL | {"kwargs": {"width_mult": 0.25}}
    checkpoints = {name: save_checkpoint(tmp_path / f"{name}.safetensors", Checkpoint(
        build_model(spec).eval(), spec, classes, SIZE))
        for name, spec in (("input", narrow), ("teacher", SMALL))}
    recipe = write_tiny_recipe(tmp_path / "recipe.yaml", checkpoints["input"], tiny_data,
                               [{"plan": {"target_speedup": 1.3, "relative_to": "teacher"}}],
                               teacher=str(checkpoints["teacher"]))
    code, output = run_cli(["run", recipe, "--out", tmp_path / "run"])
    assert code == 0, output
    result = json.loads((tmp_path / "run" / "report.json").read_text())["stages"][1]["result"]
    # A quarter of the width runs well over 1.3x faster than the full model: nothing to cut.
    assert result["relative_to"] == "teacher" and result["input_speedup"] > 1.3, result
    assert result["required_ratio"] == pytest.approx(1.3 / result["input_speedup"])
    assert result["note"] == ("plan: the input already meets 1.30x faster than the run's "
                              "teacher; nothing cut")
    assert result["chosen"] == [] and result["speedup_vs_reference"] > 1.3


def test_a_plan_relative_to_the_teacher_times_every_planned_model_against_it(tmp_path):
    """Each planned model is timed against the teacher itself, two models in turn as the
    export stage and the re-timing judge it (three in turn, with the input, read 15-40 %
    higher): the budget is met on that timing, and the input's own speed-up over the
    teacher, timed once, only converts it into a ratio over the input."""
    torch.manual_seed(0)
    teacher, model = _model(), build_model(SMALL | {"kwargs": {"width_mult": 0.75}}).eval()
    stage = create_stage("plan", {"target_speedup": 2.0, "relative_to": "teacher",
                                  "kinds": ["prune", "residual_block"],
                                  "prune_ratios": [0.75], "timing_runs": 30})
    ctx = stage_context(SIZE, ["blue", "green", "red"], torch.device("cpu"), tmp_path, SMALL,
                        teacher=teacher, echo=lambda line: None)
    result = stage.apply(model, ctx).result.to_dict()
    refits, input_speedup = result["refits"], result["input_speedup"]
    assert refits and input_speedup > 1.0, result  # the narrower input runs faster
    assert result["required_ratio"] == pytest.approx(2.0 / input_speedup)
    for step in refits:
        assert step["ratio"] == pytest.approx(step["speedup"] / input_speedup)
        assert (step["ratio"] >= step["required_ratio"]) == (step["speedup"] >= 2.0)
    # The winner's second timing against the teacher is the reported speed-up.
    winner = next(r for r in refits if r.get("confirmed_ratio") == result["achieved_ratio"])
    assert result["speedup_vs_reference"] == pytest.approx(
        result["achieved_ratio"] * input_speedup)
    assert winner["speedup"] >= 2.0 and result["speedup_vs_reference"] >= 2.0 * (1 - 0.05)


def test_a_plan_whose_input_already_meets_the_budget_cuts_nothing(tmp_path, tiny_checkpoint,
                                                                  tiny_data):
    recipe = write_tiny_recipe(tmp_path / "recipe.yaml", tiny_checkpoint, tiny_data,
                               [{"plan": {"target_latency_ms": 1000.0}}])
    code, output = run_cli(["run", recipe, "--out", tmp_path / "run"])
    assert code == 0, output
    stages = json.loads((tmp_path / "run" / "report.json").read_text())["stages"]
    assert stages[1]["note"] == "plan: the input already meets 1000 ms at batch 1; nothing cut"
    assert stages[1]["params"] == stages[0]["params"] and stages[1]["result"]["chosen"] == []

"""The README's blocks that need TrashNet run as written (the `data` tier); a file of its own
so that the suite's workers take it beside tests/test_readme.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import BENCH_CUT_SHORT, REPO
from test_readme import DATA_PLACEHOLDER, fresh_copy, readme_blocks, run_block

from compress.checkpoint import load_checkpoint

SAMPLE_TRAIN, SAMPLE_VAL = 50, 20  # images per class


@pytest.mark.slow
def test_the_blocks_that_need_trashnet_run_as_written(tmp_path, trashnet):
    """On a sample of TrashNet (see trashnet_sample), with every fine-tune cut to one epoch,
    a sensitivity analysis to a few images at one ratio (so `ratio: auto` has no choice to
    make here: tests/stages cover that), a plan to 1.3x its input with prune cuts at one
    ratio (tests/planning covers the other kinds of cut, tests/stages/test_plan.py the
    search and `relative_to: teacher`) and
    the timings to a few runs (given as --set after the README's own options), so that the
    tier fits the suite; the full-length run's figures come from benchmarks/recovery.py and
    benchmarks/latency_budget.py."""
    repo = fresh_copy(tmp_path)
    sample = trashnet_sample(trashnet, tmp_path / "trashnet")
    blocks = [code for code, tag in readme_blocks("bash") if tag == "data"]
    assert blocks
    for code in blocks:
        lines = []
        for line in code.replace(DATA_PLACEHOLDER, str(sample)).splitlines():
            if line.startswith("compress run "):
                line += " " + " ".join(shortened(repo / line.split()[2]))
            lines.append(line)
        run_block("\n".join(lines), "bash", repo)
    # The run on real images: F1 on both splits at every stage (the held-out split drawn
    # anew, as for any folder without the start's held-out images), the plan's cuts, the
    # recovery as the recipe sets it (the weight average, distilled from the model before
    # the cuts), and a prediction for every val image.
    report = json.loads((repo / "runs" / "small" / "report.json").read_text())
    stages = report["stages"]
    assert [s["name"] for s in stages] == ["input", "plan", "finetune", "export"]
    assert all(s["macro_f1"] is not None and s["held_out_macro_f1"] is not None
               for s in stages), stages
    assert stages[1]["macs"] < stages[0]["macs"]
    recovery = stages[2]["result"]
    assert recovery["distill"]["teacher"] == "input" and recovery["recovery"]["ema"] == 0.998
    # Its BatchNorm statistics measured again after the cuts: not one class for every image
    # (macro F1 at most 1/6 then), before the fine-tune and after it.
    assert stages[1]["macro_f1"] > 0.25 and stages[2]["macro_f1"] > 0.25, stages[1:3]
    predictions = (repo / "predictions.csv").read_text().splitlines()
    assert len(predictions) == 1 + 6 * SAMPLE_VAL, predictions[:3]


def trashnet_sample(trashnet: Path, into: Path) -> Path:
    """A TrashNet folder of the first SAMPLE_TRAIN train and SAMPLE_VAL val images of each
    class (links to the real files), leaving out the train images the shipped checkpoints
    hold out: with none of them there, the run draws a held-out split of its own (a part
    of them would be refused)."""
    held_out = set(load_checkpoint(REPO / "checkpoints" / "mnv3_trashnet.safetensors")
                   .held_out_files)
    for split, count in (("train", SAMPLE_TRAIN), ("val", SAMPLE_VAL)):
        for folder in sorted(p for p in (trashnet / split).iterdir() if p.is_dir()):
            files = [f for f in sorted(folder.iterdir())
                     if split != "train" or f"{folder.name}/{f.name}" not in held_out]
            (into / split / folder.name).mkdir(parents=True)
            for file in files[:count]:
                (into / split / folder.name / file.name).symlink_to(file)
    return into


def shortened(recipe_path: Path) -> list[str]:
    """--set options that cut each fine-tune of the recipe to one epoch, each sensitivity
    analysis to a few images, each plan to 1.3x its input with prune cuts at one ratio
    timed a few times (its re-plans kept: beside other tests, a first plan's predicted saving can be far
    off), and each timing to a few runs at batch 1 in one runtime."""
    options = list(BENCH_CUT_SHORT)
    for index, stage in enumerate(yaml.safe_load(recipe_path.read_text())["stages"]):
        kind, config = next(iter(stage.items()))
        if kind == "finetune":
            options += ["--set", f"stages.{index}.epochs=1"]
        if kind == "prune" and (config or {}).get("ratio") == "auto":
            options += ["--set", f"stages.{index}.calibration_images=8",
                        "--set", f"stages.{index}.sensitivity_ratios=[0.5]"]
        if kind == "plan":  # relative to its input: on a CPU where the small input alone
            # times near the teacher's target, a plan relative to the teacher cuts nothing
            options += ["--set", f"stages.{index}.relative_to=input",
                        "--set", f"stages.{index}.target_speedup=1.3",
                        "--set", f"stages.{index}.tolerance=0.2",
                        "--set", f"stages.{index}.timing_runs=10",
                        "--set", f"stages.{index}.calibration_images=8",
                        "--set", f"stages.{index}.prune_ratios=[0.5]",
                        "--set", f"stages.{index}.kinds=[prune]"]
    return options

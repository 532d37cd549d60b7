"""The README's blocks that need TrashNet run as written (the `data` tier); a file of its own
so that the suite's workers take it beside tests/test_readme.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import BENCH_CUT_SHORT
from test_readme import DATA_PLACEHOLDER, fresh_copy, readme_blocks, run_block


@pytest.mark.slow
def test_the_blocks_that_need_trashnet_run_as_written(tmp_path, trashnet):
    """With every fine-tune cut to one epoch, the sensitivity analysis to a few images at
    one ratio (so `ratio: auto` has no choice to make here: tests/stages cover that) and
    the timings to a few runs (given as --set after the README's own options), so that the
    tier fits the suite; the full-length run's figures come from
    benchmarks/default_recipe.py."""
    repo = fresh_copy(tmp_path)
    blocks = [code for code, tag in readme_blocks("bash") if tag == "data"]
    assert blocks
    for code in blocks:
        lines = []
        for line in code.replace(DATA_PLACEHOLDER, str(trashnet)).splitlines():
            if line.startswith("compress run "):
                line += " " + " ".join(shortened(repo / line.split()[2]))
            lines.append(line)
        run_block("\n".join(lines), "bash", repo)
    # The run on real images: F1 on both splits at every stage, the first prune to 60 % of
    # the MACs, and a prediction for every val image.
    stages = json.loads((repo / "runs" / "mnv3" / "report.json").read_text())["stages"]
    assert len(stages) == 9
    assert all(s["macro_f1"] is not None and s["held_out_macro_f1"] is not None
               for s in stages), stages
    assert stages[1]["macs"] < 0.65 * stages[0]["macs"]
    assert len((repo / "predictions.csv").read_text().splitlines()) >= 378


def shortened(recipe_path: Path) -> list[str]:
    """--set options that cut each fine-tune of the recipe to one epoch, each sensitivity
    analysis to a few images and each timing to a few runs at batch 1 in one runtime."""
    options = list(BENCH_CUT_SHORT)
    for index, stage in enumerate(yaml.safe_load(recipe_path.read_text())["stages"]):
        kind, config = next(iter(stage.items()))
        if kind == "finetune":
            options += ["--set", f"stages.{index}.epochs=1"]
        if kind == "prune" and (config or {}).get("ratio") == "auto":
            options += ["--set", f"stages.{index}.calibration_images=8",
                        "--set", f"stages.{index}.sensitivity_ratios=[0.5]"]
    return options

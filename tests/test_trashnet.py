"""Integration on the real TrashNet split (skips with a message where ../shared is absent)."""

from __future__ import annotations

import json
import re

import pytest
from conftest import BENCH_CUT_SHORT, REPO

from compress.tools.evaluate import evaluate_checkpoint

SHIPPED = REPO / "checkpoints" / "mnv3_trashnet.safetensors"
# Every shipped checkpoint has its own card in checkpoints/README.md.
CARDS = ["mnv3_trashnet.safetensors", "mnv3_small_trashnet.safetensors",
         "mnv3_small_kd_trashnet.safetensors", "mnv3_small_latency_plan.safetensors"]


def _model_card_figure(name: str, checkpoint: str = SHIPPED.name) -> float:
    cards = (REPO / "checkpoints" / "README.md").read_text().split("# Model card: ")
    card = next(c for c in cards if c.startswith(f"`{checkpoint}`"))
    return float(re.search(rf"\|\s*{name}\s*\|\s*([0-9.]+)", card).group(1))


@pytest.mark.parametrize("checkpoint", CARDS)
def test_shipped_checkpoint_reproduces_the_model_card_on_val(trashnet, checkpoint):
    metrics = evaluate_checkpoint(str(REPO / "checkpoints" / checkpoint), str(trashnet), "val",
                                  num_workers=2)
    assert metrics["num_images"] == 378
    assert round(metrics["macro_f1"], 3) == round(_model_card_figure("val macro F1",
                                                                     checkpoint), 3)
    assert round(metrics["accuracy"], 3) == round(_model_card_figure("val accuracy",
                                                                     checkpoint), 3)


@pytest.mark.parametrize("checkpoint", CARDS)
def test_shipped_checkpoint_holds_out_train_images_and_reproduces_the_card_on_them(
        trashnet, checkpoint):
    # The baseline is now trained without its calibration split, so recipes judge their
    # choices on images it never saw; checking the card on that split as well as on val
    # adds a check, it does not move one. The small model holds out the same images.
    from compress.checkpoint import load_checkpoint

    path = REPO / "checkpoints" / checkpoint
    held_out = load_checkpoint(str(path)).held_out_files
    assert held_out == load_checkpoint(str(SHIPPED)).held_out_files
    assert len(held_out) == _model_card_figure("held-out images", checkpoint)
    assert all((trashnet / "train" / name).is_file() for name in held_out)
    assert not any((trashnet / "val" / name).exists() for name in held_out)
    metrics = evaluate_checkpoint(str(path), str(trashnet), "held-out", num_workers=2)
    assert metrics["num_images"] == len(held_out)
    assert round(metrics["macro_f1"], 3) == round(_model_card_figure("held-out macro F1",
                                                                     checkpoint), 3)
    assert round(metrics["accuracy"], 3) == round(_model_card_figure("held-out accuracy",
                                                                     checkpoint), 3)


@pytest.mark.slow
def test_int8_recipe_judges_agreement_on_held_out_images_and_reports_val(tmp_path, trashnet):
    # With the baseline retrained without its calibration split, the keep-or-reject choice is
    # judged on those 164 images and val is only reported. Measured on the new baseline: 97.0 %
    # agreement there (96.6 % on val; the old baseline reached 98.7 % on val), so the recipe
    # now keeps float32 at the default min_agreement of 98 %.
    from conftest import run_cli

    # The stage table's timing cut short: the keep-or-reject choice times with the stage's
    # own timing_runs.
    code, output = run_cli(["run", REPO / "recipes" / "mnv3_int8.yaml", "--data", trashnet,
                            "--out", tmp_path / "run", *BENCH_CUT_SHORT])
    assert code == 0, output
    stages = json.loads((tmp_path / "run" / "report.json").read_text())["stages"]
    details = stages[1]["result"]
    assert details["checked_on"] == "164 held-out train images"
    assert details["calibrated_on"] == "200 train images"
    assert details["top1_agreement"] >= 0.95 and details["val_top1_agreement"] >= 0.95
    correct = details["top1_agreement"] >= 0.98
    faster = details["int8_speedup_vs_float32_b1"] > 1.2
    assert details["kept"] == ("int8" if correct and faster else "float32")
    assert abs(details["macro_f1"]["change"]) < 0.03
    assert stages[1]["note"] in output

"""Integration on the real TrashNet split (skips with a message where ../shared is absent)."""

from __future__ import annotations

import json
import re

import pytest
from conftest import REPO

from compress.tools.evaluate import evaluate_checkpoint

SHIPPED = REPO / "checkpoints" / "mnv3_trashnet.safetensors"


def _model_card_figure(name: str) -> float:
    card = (REPO / "checkpoints" / "README.md").read_text()
    return float(re.search(rf"\|\s*{name}\s*\|\s*([0-9.]+)", card).group(1))


def test_shipped_checkpoint_reproduces_the_model_card_on_val(trashnet):
    metrics = evaluate_checkpoint(str(SHIPPED), str(trashnet), "val", num_workers=2)
    assert metrics["num_images"] == 378
    assert round(metrics["macro_f1"], 3) == round(_model_card_figure("val macro F1"), 3)
    assert round(metrics["accuracy"], 3) == round(_model_card_figure("val accuracy"), 3)


@pytest.mark.slow
def test_int8_recipe_on_the_shipped_checkpoint_agrees_with_float32(tmp_path, trashnet):
    from conftest import run_cli

    code, output = run_cli(["run", REPO / "recipes" / "mnv3_int8.yaml", "--data", trashnet,
                            "--out", tmp_path / "run"])
    assert code == 0, output
    stages = json.loads((tmp_path / "run" / "report.json").read_text())["stages"]
    details = stages[1]["result"]
    assert details["checked_on"] == "378 val images"
    assert details["top1_agreement"] >= 0.98
    assert abs(details["macro_f1"]["change"]) < 0.01
    assert stages[1]["note"] in output

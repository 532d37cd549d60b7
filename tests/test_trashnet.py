"""Integration on the real TrashNet split (skips with a message where ../shared is absent)."""

from __future__ import annotations

import re

from compress.evaluate import evaluate_checkpoint

from conftest import REPO

SHIPPED = REPO / "checkpoints" / "mnv3_trashnet.safetensors"


def _model_card_figure(name: str) -> float:
    card = (REPO / "checkpoints" / "README.md").read_text()
    return float(re.search(rf"\|\s*{name}\s*\|\s*([0-9.]+)", card).group(1))


def test_shipped_checkpoint_reproduces_the_model_card_on_val(trashnet):
    metrics = evaluate_checkpoint(str(SHIPPED), str(trashnet), "val", num_workers=2)
    assert metrics["num_images"] == 378
    assert round(metrics["macro_f1"], 3) == round(_model_card_figure("val macro F1"), 3)
    assert round(metrics["accuracy"], 3) == round(_model_card_figure("val accuracy"), 3)

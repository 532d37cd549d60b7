"""A recipe survives YAML: what a run writes as recipe.yaml loads back to the same recipe,
typed stage configs included; cross-stage rules warn."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO

from compress.recipe.loading import load_recipe, recipe_to_yaml

# Architecture-search files (an `architecture:` key) are not recipes; tests/search/
# test_arch_search.py checks the shipped one.
SHIPPED = sorted(p for p in (REPO / "recipes").glob("*.yaml")
                 if "architecture" not in yaml.safe_load(p.read_text()))

# Checkpoints a benchmark trains rather than the repository ships: the recipe is checked on
# an untrained model of the same architecture (benchmarks/tucker_resnet18.sh trains it).
TRAINED_BY_BENCHMARKS = {"runs/resnet18/last.safetensors": "resnet18"}


def _with_stand_in(path, tmp_path):
    import torch

    from compress.checkpoint import Checkpoint, save_checkpoint
    from compress.models import build_model, model_spec_from_arg

    raw = yaml.safe_load(path.read_text())
    if (REPO / raw["checkpoint"]).is_file():
        return path
    spec = model_spec_from_arg(TRAINED_BY_BENCHMARKS[raw["checkpoint"]], 6)
    torch.manual_seed(0)
    raw["checkpoint"] = str(save_checkpoint(tmp_path / "stand_in.safetensors", Checkpoint(
        build_model(spec).eval(), spec, [str(i) for i in range(6)], 64)))
    stand_in = tmp_path / path.name
    stand_in.write_text(yaml.safe_dump(raw, sort_keys=False))
    return stand_in


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_recipe_round_trips_through_yaml(path, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    recipe = load_recipe(_with_stand_in(path, tmp_path))
    written = tmp_path / "recipe.yaml"
    written.write_text(recipe_to_yaml(recipe))
    again = load_recipe(written)
    assert recipe_to_yaml(again) == written.read_text()
    assert [s.config for s in again.stage_objects()] == [s.config for s in recipe.stage_objects()]
    assert again.model_dump(exclude={"stages"}) == recipe.model_dump(exclude={"stages"})


def test_quantize_before_the_end_and_an_unrecovered_prune_warn(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("checkpoint: checkpoints/mnv3_trashnet.safetensors\n"
                      "stages:\n  - quantize: {mode: dynamic}\n  - prune: {ratio: 0.2}\n")
    warnings = load_recipe(recipe).warnings()
    assert any("quantize is not the last stage" in w for w in warnings)
    assert any("stages.1.prune" in w and "no finetune follows" in w for w in warnings)


def test_the_default_recipe_has_no_warnings(monkeypatch):
    monkeypatch.chdir(REPO)
    assert load_recipe(REPO / "recipes" / "mnv3_tucker.yaml").warnings() == []

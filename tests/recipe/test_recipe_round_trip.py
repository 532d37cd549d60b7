"""A recipe survives YAML: what a run writes as recipe.yaml loads back to the same recipe,
typed stage configs included; cross-stage rules warn."""

from __future__ import annotations

import pytest
from conftest import REPO

from compress.recipe.loading import load_recipe, recipe_to_yaml

SHIPPED = sorted((REPO / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_recipe_round_trips_through_yaml(path, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    recipe = load_recipe(path)
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

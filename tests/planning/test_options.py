"""The options a latency plan chooses from, on the tiny Kindle MobileNetV3: which places
each kind offers, which options exclude each other, and a chosen set applied to a copy."""

from __future__ import annotations

import torch
from conftest import TINY_MNV3

from compress.measure.macs import count_macs, layer_macs
from compress.models import build_model
from compress.ops.blocks import residual_block_paths, squeeze_excite_paths
from compress.planning.options import Option, apply_options, candidate_options

SIZE = 32
EVERY_KIND = ["prune", "low_rank", "squeeze_excite", "residual_block"]


def _model():
    torch.manual_seed(0)
    return build_model({"kind": "kindle", "config": TINY_MNV3}).eval()


def test_an_option_is_keyed_by_kind_place_and_amount():
    option = Option("prune", "model.1.conv", 0.5)
    assert option.key == "prune:model.1.conv:0.5" and option.place == ("prune", "model.1.conv")
    assert Option("squeeze_excite", "model.3.se").key == "squeeze_excite:model.3.se:1"


def test_options_of_one_place_and_options_inside_a_removed_module_exclude_each_other():
    block = Option("residual_block", "model.3")
    inside = [Option("squeeze_excite", "model.3.se"), Option("prune", "model.3.conv.0", 0.5),
              Option("low_rank", "model.3.conv.0", 0.25)]
    outside = [Option("prune", "model.30.conv", 0.5), Option("squeeze_excite", "model.4.se")]
    assert all(block.excludes(o) and o.excludes(block) for o in inside)
    assert not any(block.excludes(o) or o.excludes(block) for o in outside)
    assert Option("prune", "a", 0.25).excludes(Option("prune", "a", 0.75))
    assert not Option("prune", "a", 0.25).excludes(Option("low_rank", "a", 0.25))
    gate = Option("squeeze_excite", "model.3.se")
    assert gate.excludes(block) and gate.excludes(Option("low_rank", "model.3.se.fc1", 0.5))


def test_options_cover_every_kind_and_apply_together_to_a_copy():
    model = _model()
    options = candidate_options(model, SIZE, EVERY_KIND, [0.5], [0.25], min_layer_share=0.01)
    kinds = {o.kind for o in options}
    assert kinds == set(EVERY_KIND)
    assert {o.target for o in options if o.kind == "squeeze_excite"} == \
        set(squeeze_excite_paths(model))
    assert {o.target for o in options if o.kind == "residual_block"} == \
        set(residual_block_paths(model))
    block, inside = next((b, o) for b in options if b.kind == "residual_block"
                         for o in options if o.kind == "squeeze_excite"
                         and o.target.startswith(b.target + "."))
    assert block.excludes(inside) and inside.excludes(block)
    chosen = [next(o for o in options if o.kind == kind) for kind in ("prune", "low_rank")]
    chosen.append(block)
    before = count_macs(model, SIZE)
    changed = apply_options(model, chosen, SIZE)
    assert count_macs(changed, SIZE) < before
    assert isinstance(changed.get_submodule(block.target), torch.nn.Identity)
    assert changed(torch.randn(2, 3, SIZE, SIZE)).shape == (2, 3)
    assert count_macs(model, SIZE) == before  # the input is untouched
    assert not isinstance(model.get_submodule(block.target), torch.nn.Identity)


def test_low_rank_only_where_a_layer_holds_its_share_and_never_the_classifier():
    model = _model()
    macs = layer_macs(model, SIZE)
    total = sum(macs.values())
    options = candidate_options(model, SIZE, ["low_rank"], [0.5], [0.25], min_layer_share=0.1)
    assert options and all(macs[o.target] >= 0.1 * total for o in options)
    head = list(macs)[-1]  # the last layer: the classifier
    everything = candidate_options(model, SIZE, ["low_rank"], [0.5], [0.25])
    assert head not in {o.target for o in everything}
    assert len(everything) > len(options)


def test_pruned_widths_follow_the_ratio_and_ignored_layers_keep_theirs():
    model = _model()
    prunes = candidate_options(model, SIZE, ["prune"], [0.25, 0.5], [])
    groups = sorted({o.target for o in prunes})
    assert len(prunes) == 2 * len(groups) and groups
    widest = max(groups, key=lambda g: model.get_submodule(g).out_channels)
    width = model.get_submodule(widest).out_channels
    half = apply_options(model, [Option("prune", widest, 0.5)], SIZE)
    kept = half.get_submodule(widest).out_channels
    assert kept % 8 == 0 and abs(kept - width / 2) <= 4, (width, kept)  # half, rounded to 8
    left = candidate_options(model, SIZE, ["prune"], [0.5], [], ignore=[widest])
    assert widest not in {o.target for o in left}

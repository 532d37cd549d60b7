"""Whole modules found by structure and replaced with identity: squeeze-excite gates and
residual blocks, on the tiny Kindle MobileNetV3 and on torchvision's."""

from __future__ import annotations

import torch
from conftest import TINY_MNV3

from compress.measure.macs import count_macs, layer_macs
from compress.models import build_model
from compress.ops.blocks import replace_with_identity, residual_block_paths, squeeze_excite_paths

SIZE = 32


def _tiny():
    torch.manual_seed(0)
    return build_model({"kind": "kindle", "config": TINY_MNV3}).eval()


def _macs_inside(model, path: str) -> int:
    return sum(macs for name, macs in layer_macs(model, SIZE).items()
               if name.startswith(path + "."))


@torch.no_grad()
def test_removing_a_squeeze_excite_gate_removes_exactly_its_macs():
    model = _tiny()
    gates = squeeze_excite_paths(model)
    assert len(gates) == 2  # the two blocks of TINY_MNV3 built with use_se
    before, x = count_macs(model, SIZE), torch.randn(2, 3, SIZE, SIZE)
    expected = model(x)
    inside = _macs_inside(model, gates[0])
    assert inside > 0
    replace_with_identity(model, gates[:1])
    assert count_macs(model, SIZE) == before - inside
    assert squeeze_excite_paths(model) == gates[1:]
    changed = model(x)
    assert changed.shape == expected.shape and not torch.allclose(changed, expected)


@torch.no_grad()
def test_removing_a_residual_block_leaves_its_shortcut():
    model = _tiny()
    blocks = residual_block_paths(model)
    assert blocks  # the stride-1 block whose input and output widths match
    block = model.get_submodule(blocks[0])
    width = next(m for m in block.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
    x = torch.randn(2, width, 8, 8)
    assert not torch.allclose(block(x), x)
    before = count_macs(model, SIZE)
    inside = _macs_inside(model, blocks[0])
    replace_with_identity(model, blocks[:1])
    assert count_macs(model, SIZE) == before - inside and inside > 0
    assert torch.equal(model.get_submodule(blocks[0])(x), x)
    assert model(torch.randn(2, 3, SIZE, SIZE)).shape == (2, 3)


def test_torchvision_gates_and_blocks_are_found_by_the_same_rules():
    model = build_model({"kind": "torchvision", "name": "mobilenet_v3_small",
                         "num_classes": 3}).eval()
    gates, blocks = squeeze_excite_paths(model), residual_block_paths(model)
    assert len(gates) == 9 and all(g.startswith("features.") for g in gates)
    assert len(blocks) == 6
    before = count_macs(model, SIZE)
    replace_with_identity(model, gates + blocks)
    assert count_macs(model, SIZE) < before
    assert model(torch.randn(1, 3, SIZE, SIZE)).shape == (1, 3)

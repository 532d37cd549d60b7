"""Channel pruning with torch-pruning on small networks built here: which groups exist,
the widths after a cut (coupled layers follow, the classifier keeps its width), the
channels the importance criteria keep, and the blocks pruned one by one where the whole
model cannot be pruned at once. Architectures torch-pruning cannot trace (ShuffleNet) are
in tests/models/test_architectures.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compress.ops.pruning import (
    broken_module_type,
    prunable_groups,
    prune_groups,
    prune_units,
    pruning_units,
)


class ThreeConvs(nn.Module):
    """conv1 (3->32) -> bn -> conv2 (32->32) -> bn, plus a residual conv3 (32->32) added to
    conv2's output, pooled into a 3-way linear head: conv2 and conv3 are coupled."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 32, 1, bias=False)
        self.head = nn.Linear(32, 3)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x))) + self.conv3(x)
        return self.head(x.mean((2, 3)))


def _model() -> ThreeConvs:
    torch.manual_seed(0)
    return ThreeConvs().eval()


def test_groups_are_named_by_their_root_layer_and_exclude_the_classifier():
    groups = prunable_groups(_model(), 16)
    assert "conv1" in groups and "head" not in groups
    # conv2 and conv3 write the same channels (added): one group, not two.
    assert len({"conv2", "conv3"} & set(groups)) == 1 and len(groups) == 2


def test_a_cut_narrows_the_group_and_every_layer_coupled_to_it():
    model = _model()
    prune_groups(model, 16, {"conv1": 0.5})
    assert model.conv1.out_channels == 16 and model.bn1.num_features == 16
    assert model.conv2.in_channels == 16 and model.conv3.in_channels == 16
    assert model.conv2.out_channels == 32 and model.head.out_features == 3
    with torch.no_grad():
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 3)
    (coupled,) = set(prunable_groups(_model(), 16)) - {"conv1"}
    prune_groups(model, 16, {coupled: 0.25})
    assert model.conv2.out_channels == model.conv3.out_channels == model.bn2.num_features == 24
    assert model.head.in_features == 24 and model.head.out_features == 3


def test_a_ratio_past_the_rounding_keeps_one_multiple_of_channels():
    model = _model()
    prune_groups(model, 16, {"conv1": 0.95}, round_to=8)  # 0.95 of 32 would leave 1.6
    assert model.conv1.out_channels == 8
    small = _model()
    prune_groups(small, 16, {"conv1": 0.5}, round_to=8)
    assert small.conv1.out_channels == 16  # a larger ratio never prunes less


@pytest.mark.parametrize("importance", ["l1", "l2"])
def test_magnitude_importance_keeps_the_largest_filters(importance):
    model = _model()
    scale = torch.ones(32)
    scale[::2] = 10.0  # the even filters are ten times larger
    with torch.no_grad():
        model.conv1.weight.mul_(scale[:, None, None, None])
        model.bn1.weight.fill_(1.0)
    kept = model.conv1.weight[::2].detach().clone()
    prune_groups(model, 16, {"conv1": 0.5}, importance=importance)
    assert torch.equal(model.conv1.weight.detach(), kept)


def test_a_model_is_one_unit_when_torch_pruning_can_trace_it():
    model = _model()
    units, untraced = pruning_units(model, torch.zeros(1, 3, 16, 16), kept=["head"])
    assert [unit.path for unit in units] == [""] and untraced == []
    assert units[0].kept == ("head",)
    prune_units(model, units, 0.5, "l2", round_to=8)
    assert model.conv1.out_channels == 16 and model.head.out_features == 3


class BlockAndTail(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32),
                                   nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1))
        self.tail = nn.Conv2d(32, 32, 1)
        self.head = nn.Linear(32, 3)

    def forward(self, x):
        return self.head(self.tail(self.block(x)).mean((2, 3)))


def test_a_model_that_cannot_be_pruned_whole_is_pruned_inside_its_blocks():
    """Around a module that must stay whole (as around code the tracer cannot map), each
    block is a unit of its own: pruned inside, its output layer keeping its width, so the
    code around it sees the same shapes."""
    model = BlockAndTail().eval()
    units, untraced = pruning_units(model, torch.zeros(1, 3, 16, 16), kept=["head"],
                                    avoided=frozenset({"tail"}))
    assert untraced == [] and [unit.path for unit in units] == ["block", "head"]
    assert units[0].kept == ("block.3",) and units[0].example.shape == (1, 3, 16, 16)
    prune_units(model, units, 0.5, "l2", round_to=8)
    assert model.block[0].out_channels == 16 and model.block[1].num_features == 16
    assert model.block[3].in_channels == 16 and model.block[3].out_channels == 32
    assert model.tail.in_channels == model.tail.out_channels == 32  # left whole
    with torch.no_grad():
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 3)


class Broken(nn.Module):
    def forward(self, x):
        raise IndexError("split out of range")


def test_the_module_that_fails_is_named():
    assert broken_module_type(_model(), torch.zeros(1, 3, 16, 16)) is None
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Sequential(nn.ReLU(), Broken()))
    assert broken_module_type(model, torch.zeros(1, 3, 8, 8)) == "Broken"

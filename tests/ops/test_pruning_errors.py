"""What counts as "torch-pruning cannot trace this block": only its tracer's failures. Any
other error (a bug, memory) is raised, never turned into a weaker, block-by-block pruning,
and a forward that fails for want of memory is not a broken layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compress.ops import pruning


def _model() -> nn.Module:
    return nn.Sequential(nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU()), nn.Flatten(),
                         nn.Linear(16 * 6 * 6, 3))


def test_a_tracing_failure_prunes_the_blocks_it_can_trace(monkeypatch):
    build = pruning._dependency_graph

    def whole_model_fails(module, example):
        if isinstance(module, nn.Sequential) and len(module) == 3:
            raise ZeroDivisionError("integer division or modulo by zero")  # as at a shuffle
        return build(module, example)

    monkeypatch.setattr(pruning, "_dependency_graph", whole_model_fails)
    units, untraced = pruning.pruning_units(_model(), torch.zeros(1, 3, 8, 8), kept=[])
    assert untraced == ["the model (ZeroDivisionError)"]
    assert "0" in [unit.path for unit in units]  # the block that traces is still pruned


@pytest.mark.parametrize("error", [MemoryError, torch.OutOfMemoryError, NameError,
                                   AttributeError, AssertionError])
def test_an_error_that_is_no_tracing_failure_is_raised(monkeypatch, error):
    def build(module, example):
        raise error("not a tracing failure")

    monkeypatch.setattr(pruning, "_dependency_graph", build)
    with pytest.raises(error):
        pruning.pruning_units(_model(), torch.zeros(1, 3, 8, 8), kept=[])


class _OutOfMemory(nn.Module):
    def forward(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory")


def test_running_out_of_memory_is_not_a_broken_layer():
    with pytest.raises(torch.OutOfMemoryError):
        pruning.broken_module_type(nn.Sequential(nn.Conv2d(3, 8, 1), _OutOfMemory()),
                                   torch.zeros(1, 3, 8, 8))

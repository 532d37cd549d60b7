"""MACs and parameter counts.

Convention (the competition's ptflops count): multiply-accumulates of Conv2d and Linear
layers only, for one image; activations, normalisation, pooling and additions are not
counted. A conv's MACs = output elements x (in_channels / groups) x kernel area.
"""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def layer_positions(model: nn.Module, input_size: int, in_channels: int = 3
                    ) -> dict[str, tuple[int, int]]:
    """Positions each Conv2d and Linear layer reads and writes for one image, by module
    name: H*W of its input and output for a conv; for a Linear, every position it is
    applied at (1 after global pooling, H*W for ConvNeXt's per-pixel Linears, tokens in a
    transformer). A layer called twice counts both calls."""
    positions: dict[str, tuple[int, int]] = {}
    hooks = []

    def hook(name: str):
        def record(module: nn.Module, inputs, output: torch.Tensor) -> None:
            if isinstance(module, nn.Conv2d):
                read = inputs[0].shape[-1] * inputs[0].shape[-2]
                written = output.shape[-1] * output.shape[-2]
            else:
                read = written = output.numel() // output.shape[-1]
            before = positions.get(name, (0, 0))
            positions[name] = (before[0] + read, before[1] + written)
        return record

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, in_channels, input_size, input_size, device=device))
    finally:
        model.train(was_training)
        for handle in hooks:
            handle.remove()
    return positions


def layer_macs(model: nn.Module, input_size: int, in_channels: int = 3) -> dict[str, int]:
    """MACs of every Conv2d and Linear layer, by module name, for one image."""
    return macs_from_shapes(model, layer_positions(model, input_size, in_channels))


def macs_from_shapes(model: nn.Module, positions: dict[str, tuple[int, int]]) -> dict[str, int]:
    """MACs per layer from the layers' widths and the positions they write, without a
    forward pass: channel pruning changes widths, never positions, so `positions` of the
    unpruned model serve every pruned copy."""
    modules = dict(model.named_modules())
    macs = {}
    for name, (_, written) in positions.items():
        module = modules[name]
        if isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            per_position = module.out_channels * (module.in_channels // module.groups) * kernel
        else:
            per_position = module.out_features * module.in_features
        macs[name] = written * per_position
    return macs


def count_macs(model: nn.Module, input_size: int, in_channels: int = 3) -> int:
    return sum(layer_macs(model, input_size, in_channels).values())

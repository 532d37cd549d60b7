"""Whole modules of a model: squeeze-excite gates and residual blocks, found by structure,
and replaced with identity.
"""

from __future__ import annotations

from typing import Iterable

from torch import nn

SE_TYPE_NAMES = ("SqueezeExcitation",)  # Kindle's and torchvision's squeeze-excite gates


def squeeze_excite_paths(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules()
            if type(module).__name__ in SE_TYPE_NAMES]


def residual_block_paths(model: nn.Module) -> list[str]:
    """Blocks whose output is input + f(input): removing f leaves a working network."""
    return [name for name, module in model.named_modules()
            if getattr(module, "identity", False) is True
            or getattr(module, "use_res_connect", False) is True]


def replace_with_identity(model: nn.Module, paths: Iterable[str]) -> nn.Module:
    for path in paths:
        model.set_submodule(path, nn.Identity())
    return model

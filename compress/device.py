"""Which torch device a run uses: `auto` (CUDA when there is one), `cpu` or `cuda[:N]`."""

from __future__ import annotations

import torch

from compress.errors import UserError


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device}: CUDA is not available on this machine")
    return torch.device(device)

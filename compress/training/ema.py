"""An exponential moving average of a model's weights (Polyak averaging), updated after
every optimizer step: the averaged model is the one evaluated, kept, saved and exported
where `ema_decay` is set. It smooths the epoch-to-epoch swing of a short fine-tune (3-8
points of val macro F1 between neighbouring epochs of the default recipe's last fine-tune).

BatchNorm: its running mean and variance are buffers, averaged like the weights (as
torchvision's ExponentialMovingAverage(use_buffers=True) and timm's ModelEmaV3 do), so the
averaged model's statistics belong to averaged weights of the same steps; integer buffers
(num_batches_tracked) are copied.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """`average` holds decay * average + (1 - decay) * model after each `update`."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must lie in (0, 1), not {decay}")
        self.decay = decay
        self.average = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        averaged = list(self.average.parameters()) + list(self.average.buffers())
        current = list(model.parameters()) + list(model.buffers())
        for kept, now in zip(averaged, current):
            if kept.dtype.is_floating_point:
                kept.lerp_(now.detach().to(kept.dtype), 1.0 - self.decay)
            else:
                kept.copy_(now)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.average.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.average.load_state_dict(state)

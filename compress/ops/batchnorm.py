"""BatchNorm re-estimation after a structural change, on a few training images."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from compress.data.folders import make_loader


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: Dataset, batches: int = 8,
                          batch_size: int = 32, seed: int = 0) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance on `batches` batches of
    training images (cumulative average, weights untouched); returns the model in eval mode.
    A structural cut shifts the statistics downstream; without this, a cut that costs
    nothing after a short fine-tune can look catastrophic."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.eval()
    for norm in norms:
        norm.train()
    device = next(model.parameters()).device
    loader = make_loader(images, batch_size, shuffle=True, seed=seed)
    for index, (batch, _) in enumerate(loader):
        if index >= batches:
            break
        model(batch.to(device))
    for norm, momentum in zip(norms, saved):
        norm.momentum = momentum
    return model.eval()

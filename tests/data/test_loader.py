"""A training loader never ends an epoch on a batch too small for BatchNorm after global
pooling; an evaluation loader keeps every image."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from compress.data.folders import make_loader


@pytest.mark.parametrize("images, batch, sizes", [
    (1474, 64, [64] * 23),  # TrashNet train less its calibration split: the last 2 dropped
    (1638, 64, [64] * 25 + [38]),  # all of TrashNet train: the last 38 kept
    (1488, 64, [64] * 23 + [16]),  # a quarter of a batch is kept
    (17, 8, [8, 8]),  # one image left over: dropped
    (10, 8, [8, 2]),  # a quarter of a batch of 8 is kept
    (5, 8, [5]),  # fewer images than a batch: one batch of them all
])
def test_a_training_loader_drops_a_last_batch_under_a_quarter(images, batch, sizes):
    data = TensorDataset(torch.zeros(images, 1), torch.zeros(images, dtype=torch.long))
    assert [len(x) for x, _ in make_loader(data, batch, shuffle=True)] == sizes
    assert sum(len(x) for x, _ in make_loader(data, batch, shuffle=False)) == images

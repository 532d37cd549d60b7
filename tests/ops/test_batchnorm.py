"""BatchNorm re-estimation: running statistics move to the statistics of the images seen,
weights stay, and the model comes back in eval mode."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from compress.ops.batchnorm import recalibrate_batchnorm


def test_running_statistics_become_those_of_the_images_and_nothing_else_changes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4, momentum=0.3))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(4, 3)[:, :, None, None])  # channel c: input c, 3: 0
    images = torch.randn(64, 3, 6, 6) * torch.tensor([2.0, 0.5, 1.0])[:, None, None] \
        + torch.tensor([5.0, -1.0, 0.0])[:, None, None]
    data = TensorDataset(images, torch.zeros(64, dtype=torch.long))
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k
               and "num_batches" not in k}
    norm = model[1]
    assert torch.equal(norm.running_mean, torch.zeros(4))  # the stale statistics

    returned = recalibrate_batchnorm(model, data, batches=4, batch_size=16)
    assert returned is model and not model.training and not norm.training
    # Four equal batches, cumulative average: the mean over all 64 images exactly.
    per_channel = torch.cat([images, torch.zeros(64, 1, 6, 6)], 1).transpose(0, 1).reshape(4, -1)
    assert torch.allclose(norm.running_mean, per_channel.mean(1), atol=1e-5)
    assert torch.allclose(norm.running_var[:3], per_channel[:3].var(1), rtol=0.05)
    assert norm.running_var[3] < 1e-6
    assert norm.momentum == 0.3  # restored
    for key, value in model.state_dict().items():
        if key in weights:
            assert torch.equal(value, weights[key]), key


def test_only_the_asked_number_of_batches_is_seen():
    model = nn.Sequential(nn.BatchNorm2d(1))
    images = torch.cat([torch.zeros(16, 1, 2, 2), torch.full((48, 1, 2, 2), 10.0)])
    data = TensorDataset(images, torch.zeros(64, dtype=torch.long))
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    recalibrate_batchnorm(model, data, batches=2, batch_size=16)
    assert seen == [16, 16]
    assert model[0].num_batches_tracked == 2

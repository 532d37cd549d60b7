"""The data loaders of one fit: training (each process its share of the global batch), val
and held-out (rank 0), and the training images the weight average is recalibrated on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, DistributedSampler

from compress.data.folders import make_loader
from compress.training.config import FitInputs, TrainConfig
from compress.training.distributed import Distributed

CUDA_LOADER_WORKERS = 8


@dataclass
class FitLoaders:
    train: DataLoader
    sampler: DistributedSampler | None  # under torchrun: this process's share of train
    val: DataLoader
    held_out: DataLoader | None
    recalibration: DataLoader  # for the weight average's BatchNorm statistics (same_draw)


def loader_workers(configured: int, device: torch.device) -> int:
    """Loader processes: as configured on the CPU (the cores also train); on CUDA at least
    all usable cores but one, up to CUDA_LOADER_WORKERS, since decoding and augmenting is
    then all the CPU does and a starved GPU idles (the epoch line says when it waited)."""
    if device.type != "cuda":
        return configured
    from compress.measure.machine import usable_cores

    return max(configured, min(CUDA_LOADER_WORKERS, usable_cores() - 1))


def fit_loaders(inputs: FitInputs, config: TrainConfig, job: Distributed, device: torch.device,
                echo: Callable[[str], None]) -> FitLoaders:
    """Each process loads its share of the global batch; val and the held-out images are
    read by rank 0 alone."""
    workers = loader_workers(config.num_workers, device)
    if workers != config.num_workers and job.is_main:
        echo(f"loader: {workers} worker processes instead of {config.num_workers} (on CUDA "
             "the CPU's work is to keep the GPU fed)")
    sampler = None
    if job.world_size > 1:
        sampler = DistributedSampler(inputs.train, job.world_size, job.rank, shuffle=True,
                                     seed=config.seed)
    pin = device.type == "cuda"
    train_loader = make_loader(inputs.train, config.batch_size // job.world_size, shuffle=True,
                               num_workers=workers, seed=config.seed, sampler=sampler,
                               pin_memory=pin)
    val_loader = make_loader(inputs.val, config.batch_size * 2, shuffle=False,
                             num_workers=workers, pin_memory=pin)
    held_out_loader = None if inputs.held_out is None else \
        make_loader(inputs.held_out, config.batch_size * 2, shuffle=False, num_workers=0)
    recalibration_loader = make_loader(inputs.train, config.batch_size, shuffle=True,
                                       num_workers=workers, pin_memory=pin)
    return FitLoaders(train_loader, sampler, val_loader, held_out_loader, recalibration_loader)

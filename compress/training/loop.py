"""One training epoch: seeding, forward, loss (with distillation from a teacher), backward
and optimizer step. The engine calls it once per epoch; evaluation and saving are not here."""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from compress.errors import UserError
from compress.training.config import TrainConfig
from compress.training.ema import WeightAverage
from compress.training.mixing import Mixing, mix_batch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_epoch(loader: DataLoader, sampler: DistributedSampler | None, seed: int,
               epoch: int) -> None:
    """Seeded per epoch, so a resumed run sees the same batches and augmentations."""
    loader.generator.manual_seed(seed + epoch)
    if sampler is not None:
        sampler.set_epoch(epoch)
    seed_everything(seed + epoch)


def training_memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last on CPU: a MobileNetV3 training step (forward and backward, batch 64,
    128 px, 2 threads) took 0.77 s instead of 1.32 s, and the teacher's forward 0.21 s
    instead of 0.42 s (benchmarks/RESULTS.md, "Training speed"). Not measured on CUDA: left
    as it is there."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def uses_amp(config: TrainConfig, device: torch.device) -> bool:
    """Mixed precision is asked for in the config but only ever used on CUDA."""
    return config.amp and device.type == "cuda"


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """Hinton's soft-target loss, scaled by T^2 so its gradients match cross-entropy's."""
    return nn.functional.kl_div(
        nn.functional.log_softmax(student_logits / temperature, dim=1),
        nn.functional.softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean") * temperature ** 2


@dataclass
class Optimization:
    """What takes a step. Built before resuming: resuming restores the optimizer's buffers
    and replays the schedule."""

    params: list[nn.Parameter]  # the trainable ones; frozen parameters never change
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: nn.Module
    scaler: torch.amp.GradScaler


def make_optimization(model: nn.Module, config: TrainConfig, steps_per_epoch: int,
                      use_amp: bool) -> Optimization:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise UserError("nothing to train: every parameter is frozen")
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    return Optimization(params, optimizer, _scheduler(optimizer, config, steps_per_epoch),
                        nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
                        torch.amp.GradScaler("cuda", enabled=use_amp))


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch)
    if config.schedule == "cosine":
        warmup = min(int(config.warmup_epochs * steps_per_epoch), total - 1)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, warmup, total))
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    raise ValueError(f"unknown schedule {config.schedule!r}")


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """The share of the peak rate at `step`: rising linearly over `warmup` steps (from the
    first step's 1 / warmup), then a cosine to 0 at `total` (the rewinding schedule of Renda
    et al. 2020, as in Le & Hua 2021)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1.0 + float(np.cos(np.pi * min(progress, 1.0))))


@dataclass
class EpochStats:
    loss_sum: float = 0.0  # summed per sample, so a short last batch weighs what it holds
    seen: int = 0
    steps: int = 0
    # How long the loader took to hand over the first batch (workers start, images are read)
    # and when, as Unix time (benchmarks/data_scale.py: time from the command's start).
    first_batch_s: float | None = None
    first_batch_at: float | None = None
    seconds: float = 0.0
    loader_wait_s: float = 0.0  # waiting for the loader's next batch (after the first)

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(self.seen, 1)


@dataclass(frozen=True)
class TrainStep:
    """What one training step needs besides the batch."""

    trained: nn.Module  # what runs forward: the model, or its DistributedDataParallel wrapper
    teacher: nn.Module | None  # on the device; its soft targets join the loss
    opt: Optimization
    config: TrainConfig
    device: torch.device
    classes: int = 0  # the number of classes: labels become probabilities when mixed
    ema: WeightAverage | None = None  # updated after every step

    @property
    def mixing(self) -> Mixing:
        config = self.config
        return Mixing(config.mixup_alpha, config.cutmix_alpha, config.mix_prob)


def train_one_epoch(model: nn.Module, step: TrainStep, loader: DataLoader, *,
                    description: str, show_bar: bool) -> EpochStats:
    """`model` is the one `step.trained` runs (itself, or wrapped for several processes)."""
    _set_train_mode(model, step.config.freeze_bn_stats)
    memory_format = training_memory_format(step.device)
    stats = EpochStats()
    bar = _progress(loader, len(loader), description, show_bar)
    started = waiting = time.perf_counter()
    for images, labels in bar:
        if stats.first_batch_s is None:
            stats.first_batch_s, stats.first_batch_at = time.perf_counter() - started, time.time()
        else:
            stats.loader_wait_s += time.perf_counter() - waiting
        images = images.to(step.device, non_blocking=True, memory_format=memory_format)
        labels = labels.to(step.device)
        loss = _loss(step, images, labels)
        _step(loss, step.opt, step.config)
        if step.ema is not None:
            step.ema.update(model)
        stats.loss_sum += loss.item() * len(labels)
        stats.seen += len(labels)
        stats.steps += 1
        bar.set_postfix(loss=f"{stats.mean_loss:.3f}", refresh=False)
        waiting = time.perf_counter()  # loss.item() waited for the step: the device is done
    bar.close()
    stats.seconds = time.perf_counter() - started
    return stats


def _set_train_mode(model: nn.Module, freeze_bn_stats: bool) -> None:
    model.train()
    if freeze_bn_stats:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def _loss(step: TrainStep, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss on the batch as trained: mixed where mixing is on (the labels then class
    probabilities), against the teacher's outputs on exactly those images."""
    config, device = step.config, step.device
    targets: torch.Tensor = labels
    if step.mixing.active:
        images, targets = mix_batch(images, labels, step.classes, step.mixing)
    with torch.autocast(device.type, dtype=torch.float16, enabled=uses_amp(config, device)):
        logits = step.trained(images)
        if step.teacher is None:
            return step.opt.criterion(logits, targets)
        with torch.inference_mode():
            teacher_logits = step.teacher(images)
        matched = distillation_loss(logits, teacher_logits.clone(), config.distill_temperature)
        if config.distill_mode == "function_matching":
            return matched
        return (1 - config.distill_alpha) * step.opt.criterion(logits, targets) + \
            config.distill_alpha * matched


def _step(loss: torch.Tensor, opt: Optimization, config: TrainConfig) -> None:
    opt.optimizer.zero_grad(set_to_none=True)
    opt.scaler.scale(loss).backward()
    if config.grad_clip is not None:
        opt.scaler.unscale_(opt.optimizer)
        nn.utils.clip_grad_norm_(opt.params, config.grad_clip)
    opt.scaler.step(opt.optimizer)
    opt.scaler.update()
    opt.scheduler.step()


def _progress(iterable, total: int, description: str, shown: bool):
    """A tqdm bar on a terminal only: in a log file or a captured stream it would be noise."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=description, leave=False, dynamic_ncols=True,
                mininterval=0.5, disable=not (shown and sys.stderr.isatty()))

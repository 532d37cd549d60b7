"""The training engine: used by `compress train` and by fine-tuning stages."""

from __future__ import annotations

import json
import os
import random
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from compress.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from compress.data.folders import make_loader
from compress.device import resolve_device
from compress.errors import UserError
from compress.measure.metrics import classification_metrics, predict
from compress.training.distributed import (
    _from_main,
    _wait_for_main,
    distributed_from_env,
    join_process_group,
)

BEST_NAME, LAST_NAME, STATE_NAME, HISTORY_NAME = (
    "best.safetensors", "last.safetensors", "train_state.safetensors", "history.json")


@dataclass
class TrainConfig:
    epochs: int = 100
    lr: float = 0.1  # OneCycleLR's maximum learning rate (the competition's INIT_LR)
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    amp: bool = True  # mixed precision; only ever used on CUDA
    seed: int = 42
    num_workers: int = 2
    device: str = "auto"
    schedule: str = "onecycle"  # onecycle | cosine | constant
    grad_clip: float | None = None  # clip the gradients' global norm to this value
    freeze_bn_stats: bool = False  # keep batch-norm running statistics as they are
    distill_temperature: float = 4.0  # used when fit() gets a teacher
    distill_alpha: float = 0.5  # weight of the soft-target loss
    keep: str = "last"  # last | best: which epoch fit() returns (see the module's docstring)


KEEP_CHOICES = ("last", "best")


@dataclass
class TrainResult:
    path: Path  # the kept checkpoint: last.safetensors or best.safetensors
    epoch: int
    val_f1: float  # the kept epoch's val macro F1
    best_f1: float
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _progress(iterable, total: int, description: str, shown: bool = True):
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=description, leave=False, dynamic_ncols=True,
                mininterval=0.5 if interactive else 30.0, disable=not shown)


def _save_train_state(path: Path, optimizer: torch.optim.Optimizer, epoch: int,
                      scheduler_steps: int, best_f1: float, best_epoch: int) -> None:
    """Optimizer buffers as tensors and counters as JSON metadata: resumable without pickle."""
    from safetensors.torch import save_file

    tensors = {}
    for index, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
    meta = {"epoch": epoch, "scheduler_steps": scheduler_steps, "best_f1": best_f1,
            "best_epoch": best_epoch}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"train_state": json.dumps(meta)})
    os.replace(tmp, path)


def _load_train_state(path: Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["train_state"])
        buffers = {k: f.get_tensor(k) for k in f.keys()}
    state = optimizer.state_dict()
    for key, value in buffers.items():
        index, name = key.split(".", 1)
        state["state"].setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(state)
    return meta


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    raise ValueError(f"unknown schedule {config.schedule!r}")


def training_memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last on CPU: a MobileNetV3 training step (forward and backward, batch 64,
    128 px, 2 threads) took 0.77 s instead of 1.32 s, and the teacher's forward 0.21 s
    instead of 0.42 s (see benchmarks/RESULTS.md). Not measured on CUDA: left as it is there."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """Hinton's soft-target loss, scaled by T^2 so its gradients match cross-entropy's."""
    return nn.functional.kl_div(
        nn.functional.log_softmax(student_logits / temperature, dim=1),
        nn.functional.softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean") * temperature ** 2


def fit(model: nn.Module, train_set: Dataset, val_set: Dataset, config: TrainConfig,
        out_dir: str | Path, template: Checkpoint, resume: bool = True,
        teacher: nn.Module | None = None) -> TrainResult:
    """Train `model` in place; return the kept epoch's checkpoint (`config.keep`).

    `model` itself ends as the last epoch; with keep="best", load the returned path.

    `template` gives what a saved checkpoint carries besides weights (model spec, classes,
    input size, provenance). With `resume`, a run interrupted in OUT continues from its last
    finished epoch. With a `teacher`, the loss mixes in distillation from its soft targets.
    Parameters with requires_grad False stay exactly as they are.

    Under torchrun (WORLD_SIZE > 1) every process trains a DistributedDataParallel replica
    on its share of each batch: `config.batch_size` stays the global batch, so the number of
    optimizer steps and the schedule match a one-process run. Rank 0 alone evaluates and
    writes the checkpoints and history.
    """
    if config.keep not in KEEP_CHOICES:
        raise UserError(f"keep must be one of {', '.join(KEEP_CHOICES)}, not {config.keep!r}")
    out_dir = Path(out_dir)
    job = distributed_from_env()
    device = resolve_device(config.device)
    started_group = False
    if job.world_size > 1:
        import torch.distributed as dist

        if config.batch_size % job.world_size:
            raise UserError(f"batch size {config.batch_size} does not split evenly over "
                            f"{job.world_size} processes")
        started_group = not dist.is_initialized()
        device = join_process_group(job, device)
    if job.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    use_amp = config.amp and device.type == "cuda"
    seed_everything(config.seed)

    sampler = None
    if job.world_size > 1:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(train_set, job.world_size, job.rank, shuffle=True,
                                     seed=config.seed)
    train_loader = make_loader(train_set, config.batch_size // job.world_size, shuffle=True,
                               num_workers=config.num_workers, seed=config.seed, sampler=sampler)
    val_loader = make_loader(val_set, config.batch_size * 2, shuffle=False,
                             num_workers=config.num_workers)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise UserError("nothing to train: every parameter is frozen")
    optimizer = torch.optim.SGD(trainable, lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    steps_per_epoch = len(train_loader)
    scheduler = _scheduler(optimizer, config, steps_per_epoch)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch, best_f1, best_epoch = 0, -1.0, -1
    history: list[dict[str, Any]] = []
    state_path, last_path = out_dir / STATE_NAME, out_dir / LAST_NAME
    if resume and state_path.is_file() and last_path.is_file():
        model.load_state_dict(load_checkpoint(last_path).model.state_dict())
        meta = _load_train_state(state_path, optimizer)
        start_epoch, best_f1, best_epoch = meta["epoch"], meta["best_f1"], meta["best_epoch"]
        with warnings.catch_warnings():  # replaying the schedule, not training
            warnings.simplefilter("ignore")
            for _ in range(meta["scheduler_steps"]):
                scheduler.step()
        if (out_dir / HISTORY_NAME).is_file():
            history = json.loads((out_dir / HISTORY_NAME).read_text())[:start_epoch]
        if job.is_main:
            print(f"resuming from epoch {start_epoch} (best val macro F1 so far "
                  f"{best_f1:.4f} at epoch {best_epoch})", file=sys.stderr)

    memory_format = training_memory_format(device)
    model.to(device, memory_format=memory_format)
    trained = model
    if job.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if teacher is not None:
        teacher = teacher.to(device, memory_format=memory_format).eval()
    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        # Seeded per epoch, so a resumed run sees the same batches and augmentations.
        train_loader.generator.manual_seed(config.seed + epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        seed_everything(config.seed + epoch)
        model.train()
        if config.freeze_bn_stats:
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        running_loss, seen, steps = 0.0, 0, 0
        bar = _progress(train_loader, steps_per_epoch, f"epoch {epoch + 1}/{config.epochs}",
                        job.is_main)
        for images, labels in bar:
            images = images.to(device, non_blocking=True, memory_format=memory_format)
            labels = labels.to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                logits = trained(images)
                loss = criterion(logits, labels)
                if teacher is not None:
                    with torch.no_grad():
                        soft_targets = teacher(images)
                    loss = (1 - config.distill_alpha) * loss + config.distill_alpha * \
                        distillation_loss(logits, soft_targets, config.distill_temperature)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(trainable, config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            running_loss += loss.item() * len(labels)
            seen += len(labels)
            steps += 1
            bar.set_postfix(loss=f"{running_loss / seen:.3f}", refresh=False)
        bar.close()

        if not job.is_main:  # rank 0 evaluates and saves; the others wait for it
            _wait_for_main()
            continue
        targets, predictions = predict(model, val_loader, device)
        metrics = classification_metrics(targets, predictions, template.classes)
        record = {"epoch": epoch + 1, "steps": steps, "processes": job.world_size,
                  "train_loss": running_loss / max(seen, 1),
                  "val_macro_f1": metrics["macro_f1"], "val_accuracy": metrics["accuracy"],
                  "lr": scheduler.get_last_lr()[0], "seconds": time.perf_counter() - started}
        history.append(record)
        info = {**template.info, "train": {**asdict(config), "epoch": epoch + 1,
                                           "val_macro_f1": metrics["macro_f1"],
                                           "val_accuracy": metrics["accuracy"]}}
        improved = metrics["macro_f1"] > best_f1
        if improved:
            best_f1, best_epoch = metrics["macro_f1"], epoch + 1
            save_checkpoint(out_dir / BEST_NAME, _with_model(template, model, info))
        save_checkpoint(last_path, _with_model(template, model, info))
        _save_train_state(state_path, optimizer, epoch + 1, scheduler.last_epoch, best_f1,
                          best_epoch)
        (out_dir / HISTORY_NAME).write_text(json.dumps(history, indent=1))
        print(f"epoch {epoch + 1:>3}/{config.epochs}  loss {record['train_loss']:.4f}  "
              f"val macro F1 {metrics['macro_f1']:.4f}  acc {metrics['accuracy']:.4f}  "
              f"{record['seconds']:.0f}s{'  *best' if improved else ''}", file=sys.stderr)
        if job.world_size > 1:
            _wait_for_main()

    last_f1 = history[-1]["val_macro_f1"] if job.is_main else None
    if job.world_size > 1:
        best_f1, best_epoch, last_f1 = _from_main((best_f1, best_epoch, last_f1))
        if started_group:
            import torch.distributed as dist

            dist.destroy_process_group()
    model.to("cpu", memory_format=torch.contiguous_format)
    if teacher is not None:
        teacher.to("cpu", memory_format=torch.contiguous_format)
    if config.keep == "best":
        return TrainResult(out_dir / BEST_NAME, best_epoch, best_f1, best_f1, best_epoch, history)
    return TrainResult(last_path, config.epochs, last_f1, best_f1, best_epoch, history)


def _with_model(template: Checkpoint, model: nn.Module, info: dict[str, Any]) -> Checkpoint:
    return Checkpoint(model, template.model_spec, template.classes, template.input_size, info)


def train_from_data_config(model_spec: dict[str, Any], data_config, out_dir: str | Path,
                           device: str = "auto", resume: bool = True,
                           provenance: dict[str, Any] | None = None,
                           keep: str = "last") -> TrainResult:
    """`compress train`: a new model from its spec, trained on the data YAML's folders."""
    from compress.data.training_data import train_val_datasets
    from compress.models import build_model

    train_set, val_set, classes = train_val_datasets(data_config)
    seed_everything(data_config.seed)  # the same initial weights for the same seed
    model = build_model(model_spec)
    template = Checkpoint(model, model_spec, classes, data_config.img_size,
                          info={"data": asdict(data_config), **(provenance or {})})
    config = TrainConfig(epochs=data_config.epochs, lr=data_config.init_lr,
                         batch_size=data_config.batch_size, weight_decay=data_config.weight_decay,
                         label_smoothing=data_config.label_smoothing, amp=data_config.fp16,
                         seed=data_config.seed, num_workers=data_config.num_workers,
                         grad_clip=data_config.grad_clip, device=device, keep=keep)
    return fit(model, train_set, val_set, config, out_dir, template, resume=resume)

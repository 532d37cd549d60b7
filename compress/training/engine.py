"""The training engine: used by `compress train` and by fine-tuning stages.

`fit` sets a run up (processes, loaders, optimizer, resume) and runs its epochs: one epoch of
training (`training.loop`), then on rank 0 an evaluation on val and the files a resumed run
needs (`training.checkpointing`). Lines for the user go to the `echo` callback, never print.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from compress.checkpoint import Checkpoint
from compress.data.folders import make_loader
from compress.device import resolve_device
from compress.errors import UserError
from compress.measure.metrics import classification_metrics, predict
from compress.training import checkpointing
from compress.training.checkpointing import BEST_NAME, LAST_NAME, Progress
from compress.training.config import KEEP_CHOICES, TrainConfig
from compress.training.distributed import (
    Distributed,
    distributed_from_env,
    from_main,
    join_process_group,
    wait_for_main,
)
from compress.training.loop import (
    EpochStats,
    Optimization,
    make_optimization,
    seed_epoch,
    seed_everything,
    train_one_epoch,
    training_memory_format,
    uses_amp,
)

CUDA_LOADER_WORKERS = 8
LOADER_WAIT_WARNING = 0.25  # the epoch line says so when training waited longer for images


@dataclass
class TrainResult:
    path: Path  # the kept checkpoint: last.safetensors or best.safetensors
    epoch: int
    val_f1: float  # the kept epoch's val macro F1
    best_f1: float  # the best epoch's val macro F1
    best_epoch: int  # the best by held-out macro F1 where fit had held-out images, else by val
    history: list[dict[str, Any]] = field(default_factory=list)
    best_judged_on: str = "val"  # or "held-out": the images that chose the best epoch


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def fit(model: nn.Module, train_set: Dataset, val_set: Dataset, config: TrainConfig,
        out_dir: str | Path, template: Checkpoint, resume: bool = True,
        teacher: nn.Module | None = None,
        echo: Callable[[str], None] | None = None,
        held_out_set: Dataset | None = None,
        after_epoch: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train `model` in place; return the kept epoch's checkpoint (`config.keep`).

    `model` itself ends as the last epoch; with keep="best", load the returned path. The
    best epoch is the one with the best macro F1 on `held_out_set` (train images left out
    of training), evaluated every epoch next to val; without one, on val, which then
    flatters the kept epoch's val figure.

    `template` gives what a saved checkpoint carries besides weights (model spec, classes,
    input size, provenance). With `resume`, a run interrupted in OUT continues from its last
    finished epoch. With a `teacher`, the loss mixes in distillation from its soft targets.
    Parameters with requires_grad False stay exactly as they are. `echo` gets the resume
    note and one line per epoch (default: stderr). `after_epoch` gets each epoch's history
    row once it is saved (rank 0); what it raises ends the training there (a search stops a
    hopeless trial so).

    Under torchrun (WORLD_SIZE > 1) every process trains a DistributedDataParallel replica
    on its share of each batch: `config.batch_size` stays the global batch, so the number of
    optimizer steps and the schedule match a one-process run. Rank 0 alone evaluates and
    writes the checkpoints and history.
    """
    if config.keep not in KEEP_CHOICES:
        raise UserError(f"keep must be one of {', '.join(KEEP_CHOICES)}, not {config.keep!r}")
    echo = echo or _to_stderr
    out_dir = Path(out_dir)
    job = distributed_from_env()
    device, started_group = _join(job, config)
    if job.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    workers = loader_workers(config.num_workers, device)
    if workers != config.num_workers and job.is_main:
        echo(f"loader: {workers} worker processes instead of {config.num_workers} (on CUDA "
             "the CPU's work is to keep the GPU fed)")
    train_loader, sampler, val_loader = _loaders(train_set, val_set, config, job, device,
                                                 workers)
    held_out_loader = None if held_out_set is None else \
        make_loader(held_out_set, config.batch_size * 2, shuffle=False, num_workers=0)
    opt = make_optimization(model, config, len(train_loader), uses_amp(config, device))
    started_as = checkpointing.fingerprint(model, teacher, train_set, val_set, config)
    progress = (_resume(out_dir, model, opt, job, echo, started_as) if resume else None) \
        or Progress()
    trained, teacher = _place(model, teacher, device, job)
    for epoch in range(progress.epoch, config.epochs):
        started = time.perf_counter()
        seed_epoch(train_loader, sampler, config.seed, epoch)
        stats = train_one_epoch(model, trained, train_loader, opt, config, device,
                                teacher=teacher, description=f"epoch {epoch + 1}/{config.epochs}",
                                show_bar=job.is_main)
        if job.is_main:  # rank 0 evaluates and saves; the others wait for it
            metrics = _evaluate(model, val_loader, device, template.classes)
            row = _epoch_row(epoch, stats, metrics, job, opt, started)
            if held_out_loader is not None:
                row["held_out_macro_f1"] = _evaluate(model, held_out_loader, device,
                                                     template.classes)["macro_f1"]
            improved = progress.record(row)
            checkpointing.save_epoch(out_dir, _epoch_checkpoint(template, model, config, row),
                                     improved, progress, opt.optimizer, opt.scheduler.last_epoch,
                                     started_as)
            echo(_epoch_line(row, config.epochs, improved))
            if after_epoch is not None:
                after_epoch(row)
        if job.world_size > 1:
            wait_for_main()
    return _finish(model, teacher, config, out_dir, progress, job, started_group)


def _join(job: Distributed, config: TrainConfig) -> tuple[torch.device, bool]:
    """The device to train on, and whether this call started the process group (and so
    must end it)."""
    device = resolve_device(config.device)
    if job.world_size == 1:
        return device, False
    import torch.distributed as dist

    if config.batch_size % job.world_size:
        raise UserError(f"batch size {config.batch_size} does not split evenly over "
                        f"{job.world_size} processes")
    started_group = not dist.is_initialized()
    return join_process_group(job, device), started_group


def loader_workers(configured: int, device: torch.device) -> int:
    """Loader processes: as configured on the CPU (the cores also train); on CUDA at least
    all usable cores but one, up to CUDA_LOADER_WORKERS, since decoding and augmenting is
    then all the CPU does and a starved GPU idles (the epoch line says when it waited)."""
    if device.type != "cuda":
        return configured
    from compress.measure.machine import usable_cores

    return max(configured, min(CUDA_LOADER_WORKERS, usable_cores() - 1))


def _loaders(train_set: Dataset, val_set: Dataset, config: TrainConfig, job: Distributed,
             device: torch.device, workers: int
             ) -> tuple[DataLoader, DistributedSampler | None, DataLoader]:
    """Each process loads its share of the global batch; val is read by rank 0 alone."""
    sampler = None
    if job.world_size > 1:
        sampler = DistributedSampler(train_set, job.world_size, job.rank, shuffle=True,
                                     seed=config.seed)
    pin = device.type == "cuda"
    train_loader = make_loader(train_set, config.batch_size // job.world_size, shuffle=True,
                               num_workers=workers, seed=config.seed, sampler=sampler,
                               pin_memory=pin)
    val_loader = make_loader(val_set, config.batch_size * 2, shuffle=False,
                             num_workers=workers, pin_memory=pin)
    return train_loader, sampler, val_loader


def _resume(out_dir: Path, model: nn.Module, opt: Optimization, job: Distributed,
            echo: Callable[[str], None], started_as: str) -> Progress | None:
    progress = checkpointing.resume(out_dir, model, opt.optimizer, opt.scheduler, started_as)
    if progress is not None and job.is_main:
        echo(f"resuming from epoch {progress.epoch} (best so far: epoch {progress.best_epoch})")
    return progress


def _place(model: nn.Module, teacher: nn.Module | None, device: torch.device,
           job: Distributed) -> tuple[nn.Module, nn.Module | None]:
    """Move both models to the device in the training memory format; returns what runs
    forward (the model, or its DistributedDataParallel wrapper) and the teacher."""
    memory_format = training_memory_format(device)
    model.to(device, memory_format=memory_format)
    trained = model
    if job.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if teacher is not None:
        teacher = teacher.to(device, memory_format=memory_format).eval()
    return trained, teacher


def _evaluate(model: nn.Module, val_loader: DataLoader, device: torch.device,
              classes: list[str]) -> dict[str, Any]:
    targets, predictions = predict(model, val_loader, device)
    return classification_metrics(targets, predictions, classes)


def _epoch_row(epoch: int, stats: EpochStats, metrics: dict[str, Any], job: Distributed,
               opt: Optimization, started: float) -> dict[str, Any]:
    """One entry of history.json."""
    return {"epoch": epoch + 1, "steps": stats.steps, "processes": job.world_size,
            "train_loss": stats.mean_loss, "val_macro_f1": metrics["macro_f1"],
            "val_accuracy": metrics["accuracy"], "lr": opt.scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - started, "train_seconds": stats.seconds,
            "train_images_per_s": stats.seen * job.world_size / max(stats.seconds, 1e-9),
            "loader_wait_share": stats.loader_wait_s / max(stats.seconds, 1e-9),
            "first_batch_s": stats.first_batch_s, "first_batch_at": stats.first_batch_at}


def _epoch_checkpoint(template: Checkpoint, model: nn.Module, config: TrainConfig,
                      row: dict[str, Any]) -> Checkpoint:
    """The template with this epoch's weights, and the training options and scores in info."""
    info = {**template.info, "train": {**asdict(config), "epoch": row["epoch"],
                                       "val_macro_f1": row["val_macro_f1"],
                                       "val_accuracy": row["val_accuracy"]}}
    return Checkpoint(model, template.model_spec, template.classes, template.input_size, info)


def _epoch_line(row: dict[str, Any], epochs: int, improved: bool) -> str:
    held_out = f"  held-out F1 {row['held_out_macro_f1']:.4f}" if "held_out_macro_f1" in row \
        else ""
    waited = f"  (waited for images {row['loader_wait_share']:.0%} of training: more " \
        "loader workers?)" if row.get("loader_wait_share", 0) > LOADER_WAIT_WARNING else ""
    return (f"epoch {row['epoch']:>3}/{epochs}  loss {row['train_loss']:.4f}  "
            f"val macro F1 {row['val_macro_f1']:.4f}  acc {row['val_accuracy']:.4f}{held_out}  "
            f"{row['train_images_per_s']:.0f} img/s  {row['seconds']:.0f}s"
            f"{'  *best' if improved else ''}{waited}")


def _finish(model: nn.Module, teacher: nn.Module | None, config: TrainConfig, out_dir: Path,
            progress: Progress, job: Distributed, started_group: bool) -> TrainResult:
    """Every process returns rank 0's scores; both models go back to the CPU, contiguous."""
    best_epoch = progress.best_epoch
    best_f1 = progress.history[best_epoch - 1]["val_macro_f1"] if job.is_main else None
    last_f1 = progress.history[-1]["val_macro_f1"] if job.is_main else None
    if job.world_size > 1:
        best_f1, best_epoch, last_f1 = from_main((best_f1, best_epoch, last_f1))
        if started_group:
            import torch.distributed as dist

            dist.destroy_process_group()
    model.to("cpu", memory_format=torch.contiguous_format)
    if teacher is not None:
        teacher.to("cpu", memory_format=torch.contiguous_format)
    history = progress.history
    judged_on = "held-out" if history and "held_out_macro_f1" in history[-1] else "val"
    if config.keep == "best":
        return TrainResult(out_dir / BEST_NAME, best_epoch, best_f1, best_f1, best_epoch,
                           history, judged_on)
    return TrainResult(out_dir / LAST_NAME, config.epochs, last_f1, best_f1, best_epoch,
                       history, judged_on)


def train_from_data_config(model_spec: dict[str, Any], data_config, out_dir: str | Path,
                           device: str = "auto", resume: bool = True,
                           provenance: dict[str, Any] | None = None,
                           keep: str = "last",
                           echo: Callable[[str], None] | None = None,
                           teacher: nn.Module | None = None,
                           distill: dict[str, Any] | None = None,
                           train_share: float = 1.0,
                           after_epoch: Callable[[dict[str, Any]], None] | None = None
                           ) -> TrainResult:
    """`compress train`: a new model from its spec, trained on the data YAML's folders; with
    a `teacher`, distilled from it with `distill`'s alpha and temperature (recorded in the
    checkpoint's info). `train_share` below 1 trains on that share of the training images
    (stratified, seeded by SEED; a search's proxy); `after_epoch` as for `fit`."""
    from compress.data.folders import ImageFolderDataset, split_folder
    from compress.data.training_data import (
        calibration_files,
        split_held_out,
        stratified_share,
        train_val_datasets,
    )
    from compress.data.transforms import eval_transform
    from compress.fileio import write_atomic
    from compress.models import build_model

    train_set, val_set, classes = train_val_datasets(data_config)
    train_set = stratified_share(train_set, train_share, data_config.seed)
    info = {"data": asdict(data_config), **(provenance or {})}
    if train_share < 1:
        info["train_share"] = train_share
    if teacher is not None:
        info["distill"] = {key: str(value) if key == "teacher" else value
                           for key, value in (distill or {}).items()}
    held_out_set = None
    if data_config.calibration_ratio > 0:
        # The held-out images travel with the model: later decisions on it use them.
        held_out = calibration_files(data_config)
        info["calibration"] = {"ratio": data_config.calibration_ratio,
                               "seed": data_config.seed, "files": held_out}
        write_atomic(Path(out_dir) / "calibration.txt", "\n".join(held_out) + "\n")
        every_train_image = ImageFolderDataset(split_folder(data_config.data_path, "train"),
                                               classes, eval_transform(data_config.img_size))
        held_out_set = split_held_out(every_train_image, held_out)[1]
    seed_everything(data_config.seed)  # the same initial weights for the same seed
    model = build_model(model_spec)
    template = Checkpoint(model, model_spec, classes, data_config.img_size, info=info)
    config = TrainConfig(epochs=data_config.epochs, lr=data_config.init_lr,
                         batch_size=data_config.batch_size, weight_decay=data_config.weight_decay,
                         label_smoothing=data_config.label_smoothing, amp=data_config.fp16,
                         seed=data_config.seed, num_workers=data_config.num_workers,
                         grad_clip=data_config.grad_clip, device=device, keep=keep,
                         **{f"distill_{key}": value for key, value in (distill or {}).items()
                            if key in ("alpha", "temperature")})
    return fit(model, train_set, val_set, config, out_dir, template, resume=resume, echo=echo,
               held_out_set=held_out_set, teacher=teacher, after_epoch=after_epoch)

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
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from compress.checkpoint import Checkpoint
from compress.device import resolve_device
from compress.errors import UserError
from compress.measure.metrics import classification_metrics, predict
from compress.training import checkpointing
from compress.training.checkpointing import BEST_NAME, LAST_NAME, Progress, TrainedState
from compress.training.config import KEEP_CHOICES, FitInputs, FitRun, FromDataOptions, TrainConfig
from compress.training.distributed import (
    Distributed,
    distributed_from_env,
    from_main,
    join_process_group,
    wait_for_main,
)
from compress.training.ema import WeightAverage, same_draw
from compress.training.loaders import FitLoaders, fit_loaders
from compress.training.loop import (
    EpochStats,
    Optimization,
    TrainStep,
    make_optimization,
    seed_epoch,
    seed_everything,
    train_one_epoch,
    training_memory_format,
    uses_amp,
)

if TYPE_CHECKING:
    from compress.data.config import DataConfig

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


def fit(model: nn.Module, inputs: FitInputs, config: TrainConfig, run: FitRun) -> TrainResult:
    """Train `model` in place; return the kept epoch's checkpoint (`config.keep`).

    `model` itself ends as the last epoch; with keep="best", load the returned path. The
    best epoch is the one with the best macro F1 on `inputs.held_out` (train images left out
    of training), evaluated every epoch next to val; without them, on val, which then
    flatters the kept epoch's val figure.

    `run.template` gives what a saved checkpoint carries besides weights (model spec,
    classes, input size, provenance). With `run.resume`, a run interrupted in `run.out_dir`
    continues from its last finished epoch. With `inputs.teacher`, the loss mixes in
    distillation from its soft targets (`config.distill_mode` soft_hard), or is the match to
    its outputs alone (function_matching). `config.mixup_alpha` / `cutmix_alpha` mix each
    batch (compress.training.mixing; the teacher sees the mixed images). With
    `config.ema_decay` an average of the weights is kept (compress.training.ema): it is what
    is evaluated, saved and kept, and `model` ends as it. Parameters with requires_grad False stay exactly as
    they are. `run.echo` gets the resume note and one line per epoch (default: stderr).
    `run.after_epoch` gets each epoch's history row once it is saved (rank 0); what it raises
    ends the training there (a search stops a hopeless trial so).

    Under torchrun (WORLD_SIZE > 1) every process trains a DistributedDataParallel replica
    on its share of each batch: `config.batch_size` stays the global batch, so the number of
    optimizer steps and the schedule match a one-process run. Rank 0 alone evaluates and
    writes the checkpoints and history.
    """
    if config.keep not in KEEP_CHOICES:
        raise UserError(f"keep must be one of {', '.join(KEEP_CHOICES)}, not {config.keep!r}")
    session = _start(model, inputs, config, run)
    for epoch in range(session.progress.epoch, config.epochs):
        _run_epoch(session, epoch)
    return _finish(session)


@dataclass
class _Session:
    """One fit's state, shared by its epochs."""

    model: nn.Module
    step: TrainStep  # what runs forward, the teacher and the optimizer
    config: TrainConfig
    run: FitRun
    echo: Callable[[str], None]
    job: Distributed
    device: torch.device
    started_group: bool  # this fit started the process group, and so must end it
    loaders: FitLoaders
    started_as: str  # the fingerprint a resumed run must match
    progress: Progress

    @property
    def state(self) -> TrainedState:
        opt = self.step.opt
        return TrainedState(self.model, opt.optimizer, opt.scheduler, self.step.ema)

    @property
    def evaluated(self) -> nn.Module:
        """What is evaluated, saved and kept: the weight average where one is kept."""
        return self.step.ema.average if self.step.ema is not None else self.model


def _start(model: nn.Module, inputs: FitInputs, config: TrainConfig, run: FitRun) -> _Session:
    """Join the processes, build the loaders and the optimizer, resume where a run left off
    and place the models on the device."""
    echo = run.echo or _to_stderr
    job = distributed_from_env()
    device, started_group = _join(job, config)
    if job.is_main:
        run.out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    loaders = fit_loaders(inputs, config, job, device, echo)
    opt = make_optimization(model, config, len(loaders.train), uses_amp(config, device))
    started_as = checkpointing.fingerprint(model, inputs.teacher, inputs.train, inputs.val,
                                           config)
    ema = WeightAverage(model, config.ema_decay) if config.ema_decay is not None else None
    state = TrainedState(model, opt.optimizer, opt.scheduler, ema)
    progress = (_resume(run.out_dir, state, job, echo, started_as) if run.resume
                else None) or Progress()
    trained, teacher = _place(model, inputs.teacher, device, job)
    if ema is not None:
        ema.average.to(device, memory_format=training_memory_format(device))
    step = TrainStep(trained, teacher, opt, config, device, len(run.template.classes), ema)
    return _Session(model, step, config, run, echo, job, device, started_group, loaders,
                    started_as, progress)


def _run_epoch(session: _Session, epoch: int) -> None:
    """Train one epoch on every process; rank 0 evaluates and saves, the others wait."""
    s = session
    started = time.perf_counter()
    seed_epoch(s.loaders.train, s.loaders.sampler, s.config.seed, epoch)
    stats = train_one_epoch(s.model, s.step, s.loaders.train,
                            description=f"epoch {epoch + 1}/{s.config.epochs}",
                            show_bar=s.job.is_main)
    if s.job.is_main:
        _record_epoch(s, epoch, stats, started)
    if s.job.world_size > 1:
        wait_for_main()


def _record_epoch(session: _Session, epoch: int, stats: EpochStats, started: float) -> None:
    """Evaluate, save the epoch's files, tell `echo` and `after_epoch` (rank 0)."""
    s = session
    classes = s.run.template.classes
    if s.step.ema is not None:  # its BatchNorm statistics for its own weights first
        with same_draw(s.loaders.recalibration, s.config.seed) as images:
            s.step.ema.settle(s.model, images, s.device, training_memory_format(s.device),
                              s.config.freeze_bn_stats)
    metrics = _evaluate(s.evaluated, s.loaders.val, s.device, classes)
    row = _epoch_row(epoch, stats, metrics, s.job, s.step.opt, started, s.step.ema)
    if s.loaders.held_out is not None:
        row["held_out_macro_f1"] = _evaluate(s.evaluated, s.loaders.held_out, s.device,
                                             classes)["macro_f1"]
    improved = s.progress.record(row)
    checkpointing.save_epoch(s.run.out_dir,
                             _epoch_checkpoint(s.run.template, s.evaluated, s.config, row),
                             improved, s.progress, s.state, s.started_as)
    s.echo(_epoch_line(row, s.config.epochs, improved))
    if s.run.after_epoch is not None:
        s.run.after_epoch(row)


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


def _resume(out_dir: Path, state: TrainedState, job: Distributed,
            echo: Callable[[str], None], started_as: str) -> Progress | None:
    progress = checkpointing.resume(out_dir, state, started_as)
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
               opt: Optimization, started: float, ema: WeightAverage | None) -> dict[str, Any]:
    """One entry of history.json (with a weight average, its decay reached so far)."""
    return {"epoch": epoch + 1, "steps": stats.steps, "processes": job.world_size,
            "train_loss": stats.mean_loss, "val_macro_f1": metrics["macro_f1"],
            "val_accuracy": metrics["accuracy"], "lr": opt.scheduler.get_last_lr()[0],
            **({"ema_decay": ema.current_decay()} if ema is not None else {}),
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


def _finish(session: _Session) -> TrainResult:
    """Every process returns rank 0's scores; both models go back to the CPU, contiguous."""
    progress, job, out_dir = session.progress, session.job, session.run.out_dir
    best_epoch = progress.best_epoch
    best_f1 = progress.history[best_epoch - 1]["val_macro_f1"] if job.is_main else None
    last_f1 = progress.history[-1]["val_macro_f1"] if job.is_main else None
    ema = session.step.ema
    if job.world_size > 1:
        best_f1, best_epoch, last_f1 = from_main((best_f1, best_epoch, last_f1))
        if ema is not None:  # rank 0 measured the average's statistics: every rank ends so
            ema.load_statistics(from_main(ema.statistics() if job.is_main else None))
        if session.started_group:
            import torch.distributed as dist

            dist.destroy_process_group()
    if ema is not None:  # the model ends as what was evaluated and saved
        session.model.load_state_dict(ema.average.state_dict())
    session.model.to("cpu", memory_format=torch.contiguous_format)
    if session.step.teacher is not None:
        session.step.teacher.to("cpu", memory_format=torch.contiguous_format)
    history = progress.history
    judged_on = "held-out" if history and "held_out_macro_f1" in history[-1] else "val"
    if session.config.keep == "best":
        return TrainResult(out_dir / BEST_NAME, best_epoch, best_f1, best_f1, best_epoch,
                           history, judged_on)
    return TrainResult(out_dir / LAST_NAME, session.config.epochs, last_f1, best_f1,
                       best_epoch, history, judged_on)


def train_from_data_config(model_spec: dict[str, Any], data_config: DataConfig,
                           out_dir: str | Path, options: FromDataOptions = FromDataOptions()
                           ) -> TrainResult:
    """`compress train`: a new model from its spec, trained on the data YAML's folders; with
    `options.teacher`, distilled from it with `options.distill`'s alpha and temperature
    (recorded in the checkpoint's info). `options.train_share` below 1 trains on that share
    of the training images (stratified, seeded by SEED; a search's proxy)."""
    from compress.data.training_data import stratified_share, train_val_datasets
    from compress.models import build_model

    train_set, val_set, classes = train_val_datasets(data_config)
    train_set = stratified_share(train_set, options.train_share, data_config.seed)
    info = {"data": asdict(data_config), **(options.provenance or {})}
    if options.train_share < 1:
        info["train_share"] = options.train_share
    if options.teacher is not None:
        info["distill"] = {key: str(value) if key == "teacher" else value
                           for key, value in (options.distill or {}).items()}
    held_out_set = None
    if data_config.calibration_ratio > 0:
        info["calibration"], held_out_set = _held_out(data_config, classes, Path(out_dir))
    seed_everything(data_config.seed)  # the same initial weights for the same seed
    model = build_model(model_spec)
    template = Checkpoint(model, model_spec, classes, data_config.img_size, info=info)
    return fit(model, FitInputs(train_set, val_set, held_out_set, options.teacher),
               _data_train_config(data_config, options),
               FitRun(Path(out_dir), template, options.resume, options.echo,
                      options.after_epoch))


def _held_out(data_config: DataConfig, classes: list[str], out_dir: Path
              ) -> tuple[dict[str, Any], Dataset]:
    """CALIBRATION_RATIO's train images, left out of training: the checkpoint's info entry
    that lists them (later decisions on the model use them), written to calibration.txt
    too, and the images with the test transform."""
    from compress.data.folders import ImageFolderDataset, split_folder
    from compress.data.training_data import calibration_files, split_held_out
    from compress.data.transforms import eval_transform
    from compress.fileio import write_atomic

    held_out = calibration_files(data_config)
    entry = {"ratio": data_config.calibration_ratio, "seed": data_config.held_out_seed,
             "files": held_out}
    write_atomic(out_dir / "calibration.txt", "\n".join(held_out) + "\n")
    every_train_image = ImageFolderDataset(split_folder(data_config.data_path, "train"),
                                           classes, eval_transform(data_config.img_size))
    return entry, split_held_out(every_train_image, held_out)[1]


def _data_train_config(data_config: DataConfig, options: FromDataOptions) -> TrainConfig:
    """The data YAML's training keys as the engine's options."""
    distill = options.distill or {}
    return TrainConfig(epochs=data_config.epochs, lr=data_config.init_lr,
                       batch_size=data_config.batch_size, weight_decay=data_config.weight_decay,
                       label_smoothing=data_config.label_smoothing, amp=data_config.fp16,
                       seed=data_config.seed, num_workers=data_config.num_workers,
                       grad_clip=data_config.grad_clip, device=options.device,
                       keep=options.keep, **(options.recovery or {}),
                       **{f"distill_{key}": value for key, value in distill.items()
                          if key in ("alpha", "temperature", "mode")})

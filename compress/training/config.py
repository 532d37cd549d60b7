"""The engine's options, in their own module so that the epoch loop and the engine both read
them without importing each other.

`TrainConfig` holds what changes the trained weights (it is fingerprinted for resuming and
recorded in each checkpoint): schedule options belong there. `FitInputs` and `FitRun` hold
what one `fit` call learns from and where it reports, so that `fit` keeps four arguments as
options grow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress import defaults

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import Dataset

    from compress.checkpoint import Checkpoint

KEEP_CHOICES = ("last", "best")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    lr: float = 0.1  # OneCycleLR's maximum learning rate (the competition's INIT_LR)
    batch_size: int = defaults.BATCH_SIZE
    momentum: float = 0.9
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    amp: bool = True  # mixed precision; only ever used on CUDA
    seed: int = defaults.SEED
    num_workers: int = defaults.NUM_WORKERS
    device: str = "auto"
    schedule: str = "onecycle"  # onecycle | cosine | constant
    grad_clip: float | None = None  # clip the gradients' global norm to this value
    freeze_bn_stats: bool = False  # keep batch-norm running statistics as they are
    distill_temperature: float = 4.0  # used when fit() gets a teacher
    distill_alpha: float = 0.5  # weight of the soft-target loss
    # soft_hard: (1 - alpha) x cross-entropy on the labels + alpha x the teacher's soft
    # targets; function_matching: the teacher's outputs only, on the very images (mixed and
    # augmented) the student trains on (Beyer et al. 2022)
    distill_mode: str = "soft_hard"
    mixup_alpha: float = 0.0  # Beta(alpha, alpha) blend of each batch with itself; 0: off
    cutmix_alpha: float = 0.0  # a pasted box of area share Beta(alpha, alpha); 0: off
    mix_prob: float = 1.0  # the share of batches mixed where an alpha is set
    warmup_epochs: float = 0.0  # cosine: the rate rises linearly from 0 over these first
    ema_decay: float | None = None  # keep an average of the weights: evaluated, saved, kept
    keep: str = "last"  # last | best: which epoch fit() returns (see fit's docstring)


@dataclass(frozen=True)
class FitInputs:
    """What a fit learns from and is judged on; all of it is part of the run's fingerprint
    except `held_out`."""

    train: Dataset
    val: Dataset
    # Train images left out of training: where given, they choose the best epoch.
    held_out: Dataset | None = None
    teacher: nn.Module | None = None  # distilled from (soft targets mixed into the loss)


@dataclass(frozen=True)
class FitRun:
    """Where a fit writes its checkpoints and whom it tells about each epoch."""

    out_dir: Path
    # What a saved checkpoint carries besides weights: model spec, classes, input size, info.
    template: Checkpoint
    resume: bool = True  # continue a run interrupted in out_dir from its last finished epoch
    echo: Callable[[str], None] | None = None  # the resume note and a line per epoch
    # Each epoch's history row once saved (rank 0); what it raises ends the training.
    after_epoch: Callable[[dict[str, Any]], None] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))


@dataclass(frozen=True)
class FromDataOptions:
    """How `train_from_data_config` trains a new model, beyond what the data YAML says."""

    device: str = "auto"
    keep: str = "last"  # see KEEP_CHOICES
    resume: bool = True
    # Below 1: train on that share of the training images (stratified; a search's proxy).
    train_share: float = 1.0
    teacher: nn.Module | None = None
    # {"teacher": path, "alpha", "temperature", "mode"}: recorded in the checkpoint's info;
    # they set the distillation from `teacher`.
    distill: dict[str, Any] | None = None
    # TrainConfig fields over the data YAML's (schedule, warmup_epochs, mixup_alpha, ...).
    recovery: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None  # merged into the checkpoint's info
    echo: Callable[[str], None] | None = None
    after_epoch: Callable[[dict[str, Any]], None] | None = None

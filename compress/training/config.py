"""The engine's options, in their own module so that the epoch loop and the engine both read
them without importing each other."""

from __future__ import annotations

from dataclasses import dataclass

from compress import defaults

KEEP_CHOICES = ("last", "best")


@dataclass
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
    keep: str = "last"  # last | best: which epoch fit() returns (see fit's docstring)

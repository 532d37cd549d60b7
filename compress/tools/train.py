"""`compress train`: a new model from a Kindle YAML or a torchvision name, trained on the
folders of a competition data YAML; and the line that reports which epoch was kept."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from compress.checkpoint import load_teacher
from compress.data.config import load_data_config
from compress.data.folders import find_classes, split_folder
from compress.errors import UserError
from compress.models import model_spec_from_arg
from compress.training.config import FromDataOptions
from compress.training.engine import TrainResult, train_from_data_config


@dataclass(frozen=True)
class TrainOptions:
    """`compress train`'s options besides the model and the data YAML."""

    out: str | Path = "runs/train"
    data_root: str | None = None  # overrides DATA_PATH
    epochs: int | None = None  # overrides EPOCHS
    seed: int | None = None  # overrides SEED
    cache: str | None = None  # overrides CACHE
    width_mult: float | None = None
    device: str = "auto"
    resume: bool = True
    keep: str = "last"
    # {"teacher": path, "alpha", "temperature", "mode"}: that checkpoint's outputs in the loss.
    distill: dict[str, Any] | None = None
    # The engine's recovery options (TrainConfig's schedule, warmup_epochs, mixup_alpha,
    # cutmix_alpha, ema_decay), over what the data YAML says.
    recovery: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None


def train_from_yaml(model_arg: str, data_yaml: str | Path,
                    options: TrainOptions = TrainOptions()) -> TrainResult:
    """The model's output width is the number of class folders in DATA_PATH/train; the
    options' epochs, seed and cache override the data YAML's EPOCHS, SEED and CACHE."""
    config = load_data_config(data_yaml, options.data_root)
    overrides = {key: getattr(options, key) for key in ("epochs", "seed", "cache")
                 if getattr(options, key) is not None}
    config = replace(config, **overrides)
    classes = find_classes(split_folder(config.data_path, "train"))
    spec = model_spec_from_arg(model_arg, num_classes=len(classes),
                               width_mult=options.width_mult)
    distill = options.distill
    teacher = None if distill is None else teacher_option(distill["teacher"], classes)
    return train_from_data_config(spec, config, options.out, FromDataOptions(
        device=options.device, keep=options.keep, resume=options.resume,
        provenance=options.provenance, teacher=teacher, distill=distill,
        recovery=options.recovery))


def teacher_option(path: str | Path, classes: list[str]):
    """The model given by --teacher (train and finetune), loaded before any image is decoded;
    it must predict `classes` in order, and errors name the option."""
    try:
        return load_teacher(path, classes).model
    except UserError as exc:
        raise UserError(f"--teacher: {exc}") from None


def kept_line(val_f1: float, epoch: int, best_f1: float, best_epoch: int, path,
              judged_on: str = "val") -> str:
    """The result of train and finetune; a best epoch other than the kept one is named, with
    a warning where val chose it."""
    line = f"kept epoch {epoch}: val macro F1 {val_f1:.4f}: {path}"
    if best_epoch != epoch:
        line += (f" (best epoch by held-out F1 {best_epoch}: val {best_f1:.4f})"
                 if judged_on == "held-out" else
                 f" (best epoch {best_epoch}: {best_f1:.4f}, an optimistic figure: val chose it)")
    return line

"""`compress train`: a new model from a Kindle YAML or a torchvision name, trained on the
folders of a competition data YAML; and the line that reports which epoch was kept."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from compress.checkpoint import load_teacher
from compress.data.config import load_data_config
from compress.data.folders import find_classes, split_folder
from compress.errors import UserError
from compress.models import model_spec_from_arg
from compress.training.engine import TrainResult, train_from_data_config


def train_from_yaml(model_arg: str, data_yaml: str | Path, data_root: str | None = None,
                    out: str | Path = "runs/train", epochs: int | None = None,
                    width_mult: float | None = None, device: str = "auto", resume: bool = True,
                    keep: str = "last", provenance: dict[str, Any] | None = None,
                    seed: int | None = None,
                    distill: dict[str, Any] | None = None,
                    cache: str | None = None) -> TrainResult:
    """The model's output width is the number of class folders in DATA_PATH/train; epochs,
    seed and cache override the data YAML's EPOCHS, SEED and CACHE. `distill` ({"teacher": path, "alpha",
    "temperature"}) mixes soft targets of that checkpoint into the loss."""
    config = load_data_config(data_yaml, data_root)
    if epochs is not None:
        config = replace(config, epochs=epochs)
    if seed is not None:
        config = replace(config, seed=seed)
    if cache is not None:
        config = replace(config, cache=cache)
    classes = find_classes(split_folder(config.data_path, "train"))
    spec = model_spec_from_arg(model_arg, num_classes=len(classes), width_mult=width_mult)
    teacher = None if distill is None else teacher_option(distill["teacher"], classes)
    return train_from_data_config(spec, config, out, device, resume, provenance=provenance,
                                  keep=keep, teacher=teacher, distill=distill)


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

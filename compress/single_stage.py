"""One stage on one checkpoint, outside a recipe: `compress finetune` and `compress export`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compress.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from compress.data import DataConfig, ImageFolderDataset, eval_transform, train_transform
from compress.stages import StageContext, TrainingData, create_stage
from compress.train import resolve_device


def _training_data(root: str, checkpoint: Checkpoint, batch_size: int) -> TrainingData:
    config = DataConfig(data_path=root, img_size=checkpoint.input_size,
                        aug_train="randaugment_train", batch_size=batch_size)
    train = ImageFolderDataset(Path(root) / "train", classes=checkpoint.classes,
                               transform=train_transform(config), cache=True)
    val = ImageFolderDataset(Path(root) / "val", classes=checkpoint.classes,
                             transform=eval_transform(checkpoint.input_size), cache=True)
    return TrainingData(train, val, checkpoint.classes, batch_size)


def _context(checkpoint: Checkpoint, out: Path, data: TrainingData | None, device: str,
             teacher=None) -> StageContext:
    return StageContext(checkpoint.input_size, checkpoint.classes, resolve_device(device), out,
                        checkpoint.model_spec, teacher=teacher, data=data)


def finetune_checkpoint(path: str, data_root: str, out: str, freeze: str | list[str],
                        epochs: int, lr: float, distill: bool, batch_size: int,
                        device: str) -> tuple[Path, dict[str, Any]]:
    checkpoint = load_checkpoint(path)
    options = {"epochs": epochs, "lr": lr, "freeze": freeze}
    if distill:
        options["distill"] = {}
    stage = create_stage("finetune", options)
    out_dir = Path(out)
    ctx = _context(checkpoint, out_dir, _training_data(data_root, checkpoint, batch_size), device,
                   teacher=load_checkpoint(path).model if distill else None)
    model = stage.apply(checkpoint.model, ctx)
    result = save_checkpoint(out_dir / "best.safetensors", Checkpoint(
        model, checkpoint.model_spec, checkpoint.classes, checkpoint.input_size,
        {**checkpoint.info, "finetune": ctx.details}))
    (out_dir / "finetune.json").write_text(json.dumps(ctx.details, indent=1))
    return result, ctx.details


def export_checkpoint(path: str, out: str, fp16: bool, opset: int,
                      data_root: str | None) -> dict[str, Any]:
    import shutil
    import tempfile

    checkpoint = load_checkpoint(path)
    data = _training_data(data_root, checkpoint, 64) if data_root else None
    stage = create_stage("export", {"fp16": fp16, "opset": opset})
    with tempfile.TemporaryDirectory() as tmp:
        ctx = _context(checkpoint, Path(tmp), data, "cpu")
        stage.apply(checkpoint.model, ctx)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(Path(tmp) / "model.onnx"), out)
    return ctx.details["checks"]

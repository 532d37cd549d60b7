"""One stage on one checkpoint, outside a recipe: `compress finetune` and `compress export`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compress.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from compress.data.training_data import TrainingData, open_training_data
from compress.device import resolve_device
from compress.stages.base import StageContext
from compress.stages.registry import create_stage
from compress.training.distributed import distributed_from_env


def _context(checkpoint: Checkpoint, out: Path, data: TrainingData | None, device: str,
             teacher=None) -> StageContext:
    return StageContext(checkpoint.input_size, checkpoint.classes, resolve_device(device), out,
                        checkpoint.model_spec, teacher=teacher, data=data)


def finetune_checkpoint(path: str, data_root: str, out: str, freeze: str | list[str],
                        epochs: int, lr: float, distill: bool, batch_size: int,
                        device: str, keep: str = "last") -> tuple[Path, dict[str, Any]]:
    checkpoint = load_checkpoint(path)
    options = {"epochs": epochs, "lr": lr, "freeze": freeze, "keep": keep}
    if distill:
        options["distill"] = {}
    stage = create_stage("finetune", options)
    out_dir = Path(out)
    ctx = _context(checkpoint, out_dir, open_training_data(
        data_root, checkpoint.classes, checkpoint.input_size, batch_size=batch_size), device,
                   teacher=load_checkpoint(path).model if distill else None)
    model = stage.apply(checkpoint.model, ctx)
    result = out_dir / "finetuned.safetensors"
    if distributed_from_env().is_main:  # under torchrun, rank 0 alone writes
        save_checkpoint(result, Checkpoint(
            model, checkpoint.model_spec, checkpoint.classes, checkpoint.input_size,
            {**checkpoint.info, "finetune": ctx.details}))
        (out_dir / "finetune.json").write_text(json.dumps(ctx.details, indent=1))
    return result, ctx.details


def export_checkpoint(path: str, out: str, fp16: bool, opset: int,
                      data_root: str | None) -> dict[str, Any]:
    import shutil
    import tempfile

    checkpoint = load_checkpoint(path)
    # Only the val images are used (for the parity check): train is listed, not decoded.
    data = open_training_data(data_root, checkpoint.classes, checkpoint.input_size,
                              cache_train=False) if data_root else None
    stage = create_stage("export", {"fp16": fp16, "opset": opset})
    with tempfile.TemporaryDirectory() as tmp:
        ctx = _context(checkpoint, Path(tmp), data, "cpu")
        stage.apply(checkpoint.model, ctx)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(Path(tmp) / "model.onnx"), out)
    return ctx.details["checks"]

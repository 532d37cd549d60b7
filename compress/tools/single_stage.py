"""One stage on one checkpoint, outside a recipe: `compress finetune` and `compress export`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from compress import defaults
from compress.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from compress.data.training_data import TrainingData, TrainingDataOptions, open_training_data
from compress.device import resolve_device
from compress.errors import UserError
from compress.fileio import check_writable, write_json_atomic
from compress.pipeline.measurer import Measurer
from compress.recipe.loading import describe_error
from compress.recipe.schema import BenchSection
from compress.stages.base import StageContext
from compress.stages.registry import create_stage
from compress.tools.train import teacher_option
from compress.tracking import Tracker, open_tracker
from compress.training.distributed import distributed_from_env
from compress.training.freeze import POLICIES


def _context(checkpoint: Checkpoint, out: Path, data: TrainingData | None, device: str,
             teacher=None, seed: int = defaults.SEED) -> StageContext:
    """A stage's context outside a recipe: the recipe's default bench and data settings."""
    torch_device = resolve_device(device)
    measurer = Measurer(bench=BenchSection(), data=data, device=torch_device,
                        input_size=checkpoint.input_size)
    return StageContext(checkpoint.input_size, checkpoint.classes, torch_device, out,
                        checkpoint.model_spec, teacher=teacher, data=data, measurer=measurer,
                        seed=seed, input_training=checkpoint.original_training)


def freeze_policy(text: str | list[str]) -> str | list[str]:
    """One of the policy names of compress.training.freeze, else a list of patterns."""
    if isinstance(text, list) or text in POLICIES:
        return text
    return [p.strip() for p in text.split(",") if p.strip()]


@dataclass(frozen=True)
class FinetuneOptions:
    """`compress finetune`'s options besides the checkpoint, the data and the output."""

    # As typed after --freeze: a policy name or comma-separated parameter-name patterns (or
    # a list of patterns).
    freeze: str | list[str]
    epochs: int
    lr: float
    distill: bool  # the checkpoint itself is the teacher, unless `teacher` names another
    batch_size: int
    device: str
    keep: str = "last"
    teacher: str | None = None  # a checkpoint to distil from (implies distill)
    grad_clip: float | None = None
    cache: str = "auto"
    new_held_out: bool = False  # a new held-out split even where part of the recorded one is
    # The finetune stage's other options (schedule, warmup_epochs, ema, mix), as a recipe
    # gives them; `distill_mode` goes into its distill block.
    recovery: dict[str, Any] = field(default_factory=dict)
    distill_mode: str = "soft_hard"
    seed: int = defaults.SEED  # the training's (initial draws, batch order, augmentation)


def finetune_checkpoint(path: str, data_root: str, out: str, options: FinetuneOptions
                        ) -> tuple[Path, dict[str, Any]]:
    """The finetune stage on one checkpoint; its result is OUT/finetuned.safetensors, its
    record OUT/finetune.json."""
    checkpoint = load_checkpoint(path)
    teacher_model = _teacher(checkpoint, path, options.teacher) \
        if options.distill or options.teacher else None
    rewinding = options.recovery.get("rewind", False)  # lr and epochs then from the checkpoint
    stage_options = ({} if rewinding else {"epochs": options.epochs, "lr": options.lr}) | {
        "freeze": freeze_policy(options.freeze), "keep": options.keep,
        "grad_clip": options.grad_clip, **options.recovery}
    if teacher_model is not None:
        stage_options["distill"] = {"mode": options.distill_mode}
    elif options.distill_mode != "soft_hard":
        raise UserError("--distill-mode applies with --distill or --teacher")
    try:
        stage = create_stage("finetune", stage_options)
    except ValidationError as exc:  # options that do not go together (--rewind with --lr)
        raise UserError(f"finetune: {describe_error(exc.errors()[0])}") from None
    out_dir = Path(out)
    ctx = _context(checkpoint, out_dir, open_training_data(
        data_root, checkpoint.classes, checkpoint.input_size, TrainingDataOptions(
            batch_size=options.batch_size, held_out=checkpoint.held_out_split,
            new_held_out=options.new_held_out, cache=options.cache)), options.device,
        teacher=teacher_model, seed=options.seed)
    output = stage.apply(checkpoint.model, ctx)
    details = output.result.to_dict()
    result = out_dir / "finetuned.safetensors"
    if distributed_from_env().is_main:  # under torchrun, rank 0 alone writes
        save_checkpoint(result, Checkpoint(
            output.model, checkpoint.model_spec, checkpoint.classes, checkpoint.input_size,
            {**checkpoint.info, **ctx.data.held_out_info(), "finetune": details}))
        write_json_atomic(out_dir / "finetune.json", details)
    return result, details


def _teacher(student: Checkpoint, path: str, teacher: str | None):
    """The model to distil from: a second copy of the checkpoint, or --teacher, which must
    predict the same classes in the same order."""
    if teacher is None:
        return load_checkpoint(path).model
    return teacher_option(teacher, student.classes)


def export_checkpoint(path: str, out: str, fp16: bool, opset: int,
                      data_root: str | None) -> dict[str, Any]:
    import shutil
    import tempfile

    check_writable(out)
    checkpoint = load_checkpoint(path)
    # Only the val images are used (for the parity check): train is listed, not decoded.
    data = open_training_data(data_root, checkpoint.classes, checkpoint.input_size,
                              TrainingDataOptions(cache_train=False)) if data_root else None
    stage = create_stage("export", {"fp16": fp16, "opset": opset})
    with tempfile.TemporaryDirectory() as tmp:
        ctx = _context(checkpoint, Path(tmp), data, "cpu")
        output = stage.apply(checkpoint.model, ctx)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(output.onnx), out)
    return output.result.checks


def finetune_tracker(track: str | None, uri: str | None, out: str, options: dict[str, Any],
                     echo) -> Tracker:
    """`compress finetune --track mlflow`: a started MLflow run named after --out, its
    options as parameters (off without --track; MLflow not installed is an error)."""
    out_dir = Path(out).resolve()
    tracker = open_tracker(None if track is None else "--track mlflow", uri, out_dir.parent,
                           warn=echo)
    tracker.start(out_dir.name, options, {"compress.command": "finetune",
                                          "compress.out": str(out_dir)},
                  artifact_root=out_dir.parent / "mlartifacts")
    return tracker

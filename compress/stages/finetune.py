"""Fine-tuning with the training engine, optional freezing and distillation."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator
from torch import nn

from compress.checkpoint import Checkpoint, load_checkpoint
from compress.stages.base import Stage, StageConfig, StageContext, StageOutput, StageResult
from compress.stages.registry import register_stage
from compress.training.engine import FitInputs, FitRun, TrainConfig, fit
from compress.training.freeze import POLICIES, apply_freeze


@dataclass(frozen=True)
class FinetuneResult(StageResult):
    freeze: str | list[str] = "none"
    trainable_tensors: int = 0
    keep: str = "last"
    kept_epoch: int | None = None
    val_macro_f1: float | None = None  # of the kept epoch, as the engine measured it
    best_epoch: int | None = None  # by held-out macro F1 where the input has held-out images
    best_judged_on: str = "val"
    best_val_macro_f1: float | None = None
    distill: dict[str, float] | None = None
    skipped: str | None = None  # why nothing was trained


class DistillConfig(StageConfig):
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the soft-target loss")


class FinetuneConfig(StageConfig):
    epochs: int = Field(5, ge=1)
    lr: float = Field(0.01, gt=0, description="peak learning rate")
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    batch_size: int | None = Field(None, ge=1, description="default: the data's batch size")
    weight_decay: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0, description="clip the gradients' global "
                                    "norm to this value (the baseline trained with 2.0)")
    freeze: str | list[str] = Field("none", description=f"one of {POLICIES} or name patterns")
    distill: DistillConfig | None = None
    keep: Literal["last", "best"] = Field(
        "last", description="the epoch to keep; best: by macro F1 on the train images held "
        "out of the input model's training where it records them, else by val (which makes "
        "the val figure optimistic, since val then chose it)")

    @field_validator("freeze")
    @classmethod
    def _known_policy(cls, value):
        if isinstance(value, str) and value not in POLICIES:
            raise ValueError(f"expected one of {', '.join(POLICIES)} or a list of patterns")
        return value


@register_stage
class Finetune(Stage):
    name = "finetune"
    Config = FinetuneConfig
    config: FinetuneConfig

    def needs_data(self) -> bool:
        return True

    def check(self, model: nn.Module) -> None:
        patterns = self.config.freeze
        if isinstance(patterns, list):
            names = [name for name, _ in model.named_parameters()]
            unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
            if unmatched:
                raise ValueError(f"freeze: {', '.join(unmatched)} matches no parameter "
                                 f"(names look like {names[0]})")

    def apply(self, model: nn.Module, ctx: StageContext) -> StageOutput:
        cfg = self.config
        trainable, freeze_bn_stats = apply_freeze(model, cfg.freeze, ctx.base_model_spec)
        if not trainable:  # e.g. freeze: decomposed after a decompose stage that changed nothing
            model.requires_grad_(True)
            return StageOutput(model, FinetuneResult(freeze=cfg.freeze,
                                                     skipped="no parameter left to train"))
        train_config = TrainConfig(
            epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size or ctx.data.batch_size,
            weight_decay=cfg.weight_decay, label_smoothing=cfg.label_smoothing,
            grad_clip=cfg.grad_clip, seed=ctx.seed, num_workers=ctx.data.num_workers, device=str(ctx.device),
            schedule=cfg.schedule, freeze_bn_stats=freeze_bn_stats,
            distill_temperature=cfg.distill.temperature if cfg.distill else 4.0,
            distill_alpha=cfg.distill.alpha if cfg.distill else 0.0, keep=cfg.keep)
        template = Checkpoint(model, ctx.base_model_spec, ctx.classes, ctx.input_size)
        result = fit(model, FitInputs(ctx.data.train, ctx.data.val,
                                      held_out=ctx.data.calibration,
                                      teacher=ctx.teacher if cfg.distill else None),
                     train_config, FitRun(ctx.stage_dir / "train", template, echo=ctx.echo))
        return StageOutput(load_checkpoint(result.path).model, FinetuneResult(
            freeze=cfg.freeze, trainable_tensors=len(trainable), keep=cfg.keep,
            kept_epoch=result.epoch, val_macro_f1=result.val_f1, best_epoch=result.best_epoch,
            best_val_macro_f1=result.best_f1, best_judged_on=result.best_judged_on,
            distill=cfg.distill.model_dump() if cfg.distill else None))

"""Fine-tuning with the training engine, optional freezing and distillation."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from compress.checkpoint import Checkpoint, load_checkpoint
from compress.errors import UserError
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
    distill: dict[str, Any] | None = None
    # How it recovered: schedule, warmup_epochs, ema, mix and reinit as configured.
    recovery: dict[str, Any] | None = None
    skipped: str | None = None  # why nothing was trained


class DistillConfig(StageConfig):
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the soft-target loss "
                         "(soft_hard only)")
    mode: Literal["soft_hard", "function_matching"] = Field(
        "soft_hard", description="soft_hard: (1 - alpha) x the labels' cross-entropy + alpha "
        "x the teacher's soft targets; function_matching: the teacher's outputs only, on the "
        "very images the student trains on (mixed ones too)")
    teacher: Literal["teacher", "input"] = Field(
        "teacher", description="teacher: the recipe's teacher (compress finetune's --teacher; "
        "the run's input checkpoint where there is none); input: the run's input checkpoint, "
        "the model before the run's cuts, while the recipe's teacher stays what a plan times "
        "against")


class MixConfig(StageConfig):
    mixup_alpha: float = Field(0.0, ge=0, description="Beta(alpha, alpha) blend of each "
                               "batch with itself reversed; 0: off")
    cutmix_alpha: float = Field(0.0, ge=0, description="a pasted box of area share "
                                "Beta(alpha, alpha); 0: off (both set: each batch one of them)")
    prob: float = Field(1.0, ge=0, le=1, description="the share of batches mixed")


class FinetuneConfig(StageConfig):
    epochs: int = Field(5, ge=1)
    lr: float = Field(0.01, gt=0, description="peak learning rate")
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    warmup_epochs: float = Field(0.0, ge=0, description="cosine: the rate rises linearly "
                                 "from 0 over these first epochs")
    batch_size: int | None = Field(None, ge=1, description="default: the data's batch size")
    weight_decay: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0, description="clip the gradients' global "
                                    "norm to this value (the baseline trained with 2.0)")
    freeze: str | list[str] = Field("none", description=f"one of {POLICIES} or name patterns")
    distill: DistillConfig | None = None
    mix: MixConfig | None = None
    ema: float | None = Field(None, gt=0, lt=1, description="decay of an average of the "
                              "weights kept after every step (e.g. 0.998): the average is "
                              "evaluated, kept, saved and exported")
    reinit: bool = Field(False, description="train the stage's architecture from fresh "
                         "weights (every layer drawn anew, seeded) instead of the ones it got")
    rewind: bool = Field(False, description="learning-rate rewinding: the peak lr and the "
                         "epochs of the run input's own recorded training, cosine after a "
                         "warmup (warmup_epochs, default 5 % of the epochs)")

    @model_validator(mode="after")
    def _rewind_sets_lr_and_epochs(self):
        given = {"lr", "epochs", "schedule"} & self.model_fields_set
        if self.rewind and given:
            raise ValueError(f"rewind takes lr, epochs and schedule from the input's recorded "
                             f"training; drop {', '.join(sorted(given))} or rewind")
        return self
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


def _teacher(distill: DistillConfig | None, ctx: StageContext) -> nn.Module | None:
    """The model to distil from, where the stage distils."""
    if distill is None:
        return None
    return ctx.run_input if distill.teacher == "input" else ctx.teacher


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
        if cfg.reinit:
            fresh_weights(model, ctx.seed)
        if cfg.rewind:
            cfg = rewound(cfg, ctx.input_training)
            ctx.echo(f"finetune: rewound to the input's training: lr {cfg.lr:g}, "
                     f"{cfg.epochs} epochs, cosine after {cfg.warmup_epochs:g} warmup epochs")
        train_config = _train_config(cfg, ctx, freeze_bn_stats)
        template = Checkpoint(model, ctx.base_model_spec, ctx.classes, ctx.input_size)
        result = fit(model, FitInputs(ctx.data.train, ctx.data.val,
                                      held_out=ctx.data.calibration,
                                      teacher=_teacher(cfg.distill, ctx)),
                     train_config, FitRun(ctx.stage_dir / "train", template, echo=ctx.echo))
        return StageOutput(load_checkpoint(result.path).model, FinetuneResult(
            freeze=cfg.freeze, trainable_tensors=len(trainable), keep=cfg.keep,
            kept_epoch=result.epoch, val_macro_f1=result.val_f1, best_epoch=result.best_epoch,
            best_val_macro_f1=result.best_f1, best_judged_on=result.best_judged_on,
            distill=cfg.distill.model_dump() if cfg.distill else None,
            recovery={"schedule": cfg.schedule, "warmup_epochs": cfg.warmup_epochs,
                      "ema": cfg.ema, "mix": cfg.mix.model_dump() if cfg.mix else None,
                      "reinit": cfg.reinit, "rewind": cfg.rewind, "lr": cfg.lr,
                      "epochs": cfg.epochs}))


def _train_config(cfg: FinetuneConfig, ctx: StageContext, freeze_bn_stats: bool
                  ) -> TrainConfig:
    mix, distill = cfg.mix or MixConfig(), cfg.distill or DistillConfig(alpha=0.0)
    return TrainConfig(
        epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size or ctx.data.batch_size,
        weight_decay=cfg.weight_decay, label_smoothing=cfg.label_smoothing,
        grad_clip=cfg.grad_clip, seed=ctx.seed, num_workers=ctx.data.num_workers,
        device=str(ctx.device), schedule=cfg.schedule, freeze_bn_stats=freeze_bn_stats,
        distill_temperature=distill.temperature, distill_alpha=distill.alpha,
        distill_mode=distill.mode, mixup_alpha=mix.mixup_alpha,
        cutmix_alpha=mix.cutmix_alpha, mix_prob=mix.prob, warmup_epochs=cfg.warmup_epochs,
        ema_decay=cfg.ema, keep=cfg.keep)


def rewound(cfg: FinetuneConfig, training: dict[str, Any] | None) -> FinetuneConfig:
    """The configuration with the peak rate and length of `training` (a checkpoint's
    Checkpoint.original_training), a cosine schedule and, unless given, 5 % of it as warmup
    (Renda et al. 2020; Le & Hua 2021)."""
    if not training or "lr" not in training or "epochs" not in training:
        raise UserError("finetune: rewind needs the input's recorded training (lr and epochs "
                        "in its info['train'], as compress train writes, or the "
                        "original_training a run's stages carry); this checkpoint records "
                        "none: give lr and epochs instead")
    epochs = int(training["epochs"])
    warmup = cfg.warmup_epochs if "warmup_epochs" in cfg.model_fields_set else \
        round(0.05 * epochs, 2)
    return cfg.model_copy(update={"lr": float(training["lr"]), "epochs": epochs,
                                  "schedule": "cosine", "warmup_epochs": warmup})


def fresh_weights(model: nn.Module, seed: int) -> None:
    """Every layer's weights drawn anew as at construction (seeded), the architecture kept:
    the pruned or planned design trained from scratch, the control of Liu et al. 2019."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()
    finally:
        torch.random.set_rng_state(generator_state)

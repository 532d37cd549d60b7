"""A new input resolution: every later stage, fine-tune and measurement works at it.

The competition teams' strongest lever (224 -> 156 px). The model itself does not change
(its global pooling makes it resolution-agnostic); the pipeline re-builds the data
transforms at the new size, and a following fine-tune adapts the weights to it. A user
knob: the default recipe keeps the baseline's size, so that it measures compression.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import Field
from torch import nn

from compress.errors import first_line
from compress.stages.base import Stage, StageConfig, StageContext, StageOutput, StageResult
from compress.stages.registry import register_stage


@dataclass(frozen=True)
class ResizeResult(StageResult):
    input_size_before: int = 0
    input_size_after: int = 0


class ResizeConfig(StageConfig):
    input_size: int = Field(..., ge=16, le=2048, description="new square input size (px)")


@register_stage
class Resize(Stage):
    name = "resize"
    Config = ResizeConfig
    config: ResizeConfig

    def check(self, model: nn.Module) -> None:
        size = self.config.input_size
        try:
            with torch.no_grad():
                model.eval()(torch.zeros(1, 3, size, size))
        except RuntimeError as exc:
            raise ValueError(f"the model does not run at {size}x{size}: "
                             f"{first_line(exc)}") from None

    def apply(self, model: nn.Module, ctx: StageContext) -> StageOutput:
        size = self.config.input_size
        return StageOutput(model, ResizeResult(input_size_before=ctx.input_size,
                                               input_size_after=size), input_size=size)

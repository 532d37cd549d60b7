"""The stage contract: a typed config (unknown keys rejected) and apply(model, ctx) -> model.

A stage changes the model and nothing else: the pipeline saves, exports and measures
after it. What a stage wants to report (ranks chosen, channels kept) goes in
`ctx.details`; files it produces go in `ctx.stage_dir`.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from compress.data.training_data import TrainingData


class StageConfig(BaseModel):
    """Base of every stage's options: the recipe keys, typed; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class StageContext:
    """What a stage may use besides the model."""

    input_size: int
    classes: list[str]
    device: torch.device
    stage_dir: Path
    base_model_spec: dict[str, Any]
    teacher: nn.Module | None = None  # the input checkpoint's model, for distillation
    data: TrainingData | None = None  # None when no data folder was found
    seed: int = 42
    details: dict[str, Any] = field(default_factory=dict)
    # Progress and notes go here, never to print(): a run, a fine-tune and a search trial
    # then log the same lines wherever their caller sends them.
    echo: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))

    def example_input(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(batch, 3, self.input_size, self.input_size)


class Stage(ABC):
    """One step of a recipe. Subclasses set `name` and `Config` and implement apply."""

    name: ClassVar[str]
    Config: ClassVar[type[StageConfig]]

    def __init__(self, config: StageConfig):
        self.config = config

    def needs_data(self) -> bool:
        """Whether apply() needs images; without data such a stage is skipped."""
        return False

    def check(self, model: nn.Module) -> None:
        """Validate options against the input model before any work; raise ValueError."""

    @abstractmethod
    def apply(self, model: nn.Module, ctx: StageContext) -> nn.Module:
        """Return the changed model (may be the same object, changed in place)."""

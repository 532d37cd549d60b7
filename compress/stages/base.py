"""The stage contract: a typed config (unknown keys rejected) and
apply(model, ctx) -> StageOutput (the model plus a typed, frozen result).

A stage changes the model and nothing else: the pipeline saves, exports and measures
after it. What a stage reports (ranks chosen, channels kept) is its result, a frozen
dataclass serialised into the stage's record; files it produces go in `ctx.stage_dir`. A
stage that must decide by measuring (keep INT8 only when faster, `ratio: auto`) asks
`ctx.measurer`, the pipeline's one measurer; it never times a model or computes macro F1
itself. Counting MACs is structure, not measurement: a stage may count them.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, get_args

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, model_validator
from torch import nn
from torch.utils.data import Dataset

from compress import defaults
from compress.data.training_data import TrainingData
from compress.measure.latency import FilesInTurn

if TYPE_CHECKING:  # types only: stages never time models themselves
    from compress.measure.latency import Comparison
    from compress.measure.runtime import RuntimeChoice


def reject_bool_numbers(model: type[BaseModel], data: Any) -> Any:
    """`epochs: true` is a mistake, not 1: pydantic's lax mode would take a YAML boolean for
    a number. Used as a `mode="before"` validator by every options model."""
    if isinstance(data, dict):
        for name, value in data.items():
            field = model.model_fields.get(name)
            if isinstance(value, bool) and field is not None:
                kinds = set(get_args(field.annotation)) or {field.annotation}
                if kinds & {int, float} and bool not in kinds:
                    raise ValueError(f"{name}: expected a number, not {str(value).lower()}")
    return data


class StageConfig(BaseModel):
    """Base of every stage's options: the recipe keys, typed; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        return reject_bool_numbers(cls, data)


class StageStatus(str, Enum):
    DONE = "done"
    SKIPPED = "skipped"  # it needs data and the run has none


@dataclass(frozen=True)
class StageResult:
    """What a stage reports besides its model; each stage kind subclasses it with typed
    fields. `note` is one line the pipeline shows after the stage's row."""

    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ReportTable:
    title: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]  # cells already formatted


@dataclass(frozen=True)
class ReportBars:
    """A bar per name, before and after the stage (channels per layer)."""

    title: str
    before_after: dict[str, list[int]]
    y_label: str


@dataclass(frozen=True)
class ReportText:
    title: str
    text: str


ReportSection = ReportTable | ReportBars | ReportText


def cell(value: Any, spec: str) -> str:
    """A report table's cell: `value` formatted, or empty where there is none."""
    return "" if value is None else format(value, spec)


@dataclass(frozen=True)
class ParityRow:
    """One check of a stage's file against the torch model it came from."""

    check: str
    relative_error: float | None
    top1_agreement: float | None


@dataclass(frozen=True)
class StageOutput:
    """What apply() returns."""

    model: nn.Module
    result: StageResult
    onnx: Path | None = None  # a deployable file the stage wrote (export, quantize); None:
    #                           the pipeline exports the model itself
    input_size: int | None = None  # the new input size (resize); None: unchanged


class StageMeasurer(FilesInTurn, Protocol):
    """Everything a stage may ask of the pipeline's measurer (compress.pipeline.measurer);
    a stage reads nothing else of it."""

    provider: str  # the ONNX Runtime provider the ONNX files are timed and evaluated with
    onnx_runtime: RuntimeChoice  # what runs those files (ONNX Runtime, or OpenVINO)

    def runner(self, onnx_path: str | Path) -> Any:
        """The ONNX file opened in `onnx_runtime` (prepare(images) then call)."""

    def compare_files(self, path_a: Path, path_b: Path, runs: int | None = None,
                      batch: int = 1) -> Comparison:
        """Latency of two ONNX files at a batch (1 by default), timed interleaved;
        ratio = a / b."""

    def device_fingerprint(self) -> dict:
        """What a latency measured here depends on besides the model (cache key)."""

    def top1(self, path: Path, images: torch.Tensor) -> np.ndarray:
        """Top-1 class of each image by an ONNX file."""

    def macro_f1(self, targets: np.ndarray, predictions: np.ndarray) -> float:
        """Macro F1 as the competition computes it."""

    def model_macro_f1(self, model: nn.Module, images: Dataset) -> float:
        """Macro F1 of a torch model on a labelled dataset."""


@dataclass
class StageContext:
    """What a stage may use besides the model."""

    input_size: int
    classes: list[str]
    device: torch.device
    stage_dir: Path
    base_model_spec: dict[str, Any]
    teacher: nn.Module | None = None  # to distil from: the recipe's teacher, else the input
    run_input: nn.Module | None = None  # the run's input model (stage 0), never changed
    # The training the run's input checkpoint records (its info["train"]: lr, epochs, ...),
    # for a fine-tune that rewinds to it; None where it records none.
    input_training: dict[str, Any] | None = None
    data: TrainingData | None = None  # None when no data folder was found
    seed: int = defaults.SEED
    measurer: StageMeasurer | None = None
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
    def apply(self, model: nn.Module, ctx: StageContext) -> StageOutput:
        """The changed model (may be the same object, changed in place) and the result."""

    # What a stage shows in the run's report, from its result as its record stores it (a
    # report is also drawn for runs read back from disk). The report draws these; it never
    # looks inside a stage's result itself.
    @classmethod
    def report_sections(cls, result: dict[str, Any], stage: str) -> list[ReportSection]:
        """Sections of the report beyond the stage table (`stage`: "index:name")."""
        return []

    @classmethod
    def parity_rows(cls, result: dict[str, Any]) -> list[ParityRow]:
        """Checks of the stage's files against torch, for the report's parity table."""
        return []

"""The plan's timings: sets of cuts and whole planned models, each timed in turn with the
stage's input (compress.measure.latency.time_in_turn), and, where the target is relative to
another model (a teacher), with that reference too.

Why the reference runs in every whole-model timing: the reference-vs-input ratio sets what
the plan must reach, and one timing of it ranged 2.11-3.25x across eight runs of the same
two models (mobilenet_v3_small against the MobileNetV3 baseline, 2 threads); an 8x plan
built on the 3.25x draw re-timed at 73 % of its target. Each timing of a planned model
now measures the reference again in the same cycles, and the budget follows the median of
all of them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from compress.ops.onnx_export import export_onnx
from compress.stages.base import StageContext

WHOLE_MODEL_FACTOR = 3  # a whole model decides the plan: three times an option's runs


@dataclass(frozen=True)
class WholeTiming:
    ratio: float  # how many times faster the model runs than the stage's input
    ms: float  # the model's median latency at the batch
    reference_ratio: float | None  # the input against the reference in the same cycles


@dataclass
class Budget:
    """The ratio over the stage's input a plan must reach: target_speedup over the reference
    (the input, or the teacher through the reference-vs-input ratios measured so far, their
    median), or the input's latency over target_latency_ms."""

    target_speedup: float | None
    target_latency_ms: float | None
    input_ms: float
    reference_ratios: list[float] = field(default_factory=list)

    @property
    def input_speedup(self) -> float:
        """How many times faster the stage's input runs than the reference."""
        return statistics.median(self.reference_ratios) if self.reference_ratios else 1.0

    @property
    def required(self) -> float:
        if self.target_speedup is not None:
            return self.target_speedup / self.input_speedup
        return self.input_ms / self.target_latency_ms


@dataclass
class PlanTiming:
    """Exports models into one folder and times them against the stage's input (and the
    reference, when there is one besides the input)."""

    ctx: StageContext
    folder: Path
    input_path: Path
    batch: int
    runs: int
    reference_path: Path | None = None
    count: int = 0

    def export(self, model: nn.Module) -> Path:
        self.count += 1
        return export_onnx(model, self.folder / f"m{self.count}.onnx", self.ctx.input_size)

    def shares_saved(self, models: list[nn.Module], runs_factor: int = 1
                     ) -> tuple[list[float], float]:
        """The share of the input's latency each model saves, and the noise of the timing:
        all are timed in turn with the input and a copy of it, whose deviation from the
        input is that noise."""
        paths = [self.export(model) for model in models]
        ratios = self.ctx.measurer.time_in_turn([self.input_path, self.input_path, *paths],
                                                runs_factor * self.runs, batch=self.batch).ratios
        for path in paths:
            path.unlink()
        return [1.0 - 1.0 / ratio for ratio in ratios[2:]], abs(1.0 - 1.0 / ratios[1])

    def input_alone(self) -> WholeTiming:
        """The stage's input (ratio 1.0) and its ms, against the reference if there is one."""
        timed = self._in_turn([])
        return WholeTiming(1.0, timed.ms, timed.reference_ratio)

    def whole(self, model: nn.Module) -> WholeTiming:
        """A planned model against the stage's input (and the reference, in the same
        cycles)."""
        path = self.export(model)
        try:
            return self._in_turn([path])
        finally:
            path.unlink()

    def _in_turn(self, paths: list[Path]) -> WholeTiming:
        first = [self.reference_path] if self.reference_path else []
        if not first and not paths:  # the input alone: its ms against a copy of itself
            paths = [self.input_path]
        timed = self.ctx.measurer.time_in_turn([*first, self.input_path, *paths],
                                               WHOLE_MODEL_FACTOR * self.runs, batch=self.batch)
        ratios, medians = timed.ratios, timed.medians_ms
        if first:  # ratios over the reference: the input's, then the model's
            reference_ratio = ratios[1]
            ratios, medians = [r / reference_ratio for r in ratios[1:]], medians[1:]
        else:
            reference_ratio = None
        return WholeTiming(ratios[-1], medians[-1], reference_ratio)

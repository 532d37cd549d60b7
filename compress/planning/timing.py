"""The plan's timings: sets of cuts against the stage's input, and whole planned models
against the reference the target is set on (the run's input, or its teacher), each in turn
(compress.measure.latency.time_in_turn).

Why a whole planned model is timed against the reference alone, two models in turn: that is
how the export stage and compress retime judge it. The plan used to time three models
in turn (the reference, the stage's input, the planned model) and multiply two ratios; turns
of three read 15-40 % higher than turns of two of the same files (benchmarks/RESULTS.md,
"Latency stability and timing method", 2026-11-30, "which speed-up estimator"), and plans
that met 5x that way re-timed at 4.2-5.2x (benchmarks/RESULTS.md, "Compress to a latency
budget", 2026-11-30, "the retrained baseline"). The input-vs-reference ratio, timed once,
only converts the budget into a saving of the input's latency, which steers the choice;
whether a plan meets the budget is read off its own timing against the reference.

Every timing runs in a process of its own (the measurer's, compress.measure.timing_process):
timed in the plan's own process, late refits read 5x models up to 20 % slow and plans
overshot their target.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from compress.measure.latency import FilesInTurn
from compress.ops.onnx_export import export_onnx

WHOLE_MODEL_FACTOR = 3  # a whole model decides the plan: three times an option's runs


@dataclass(frozen=True)
class WholeTiming:
    speedup: float  # how many times faster than the reference, timed in turn with it
    ratio: float  # over the stage's input: speedup / the input's own speedup
    ms: float  # the model's median latency at the batch
    spread: list[float] | None = None  # p10 and p90 of `speedup` over cycles
    disturbed: bool = False  # other processes used the cores throughout the timing


@dataclass
class Budget:
    """The ratio over the stage's input a plan must reach: target_speedup over the reference
    (the input, or another model through the input's own speedup over it), or the input's
    latency over target_latency_ms."""

    target_speedup: float | None
    target_latency_ms: float | None
    input_ms: float
    input_speedup: float = 1.0  # how many times faster the stage's input runs than the reference

    @property
    def required(self) -> float:
        if self.target_speedup is not None:
            return self.target_speedup / self.input_speedup
        return self.input_ms / self.target_latency_ms


@dataclass
class PlanTiming:
    """Exports models into one folder and times them: sets of cuts against the stage's
    input, whole models against the reference (the input where there is none besides it)."""

    timer: FilesInTurn  # the pipeline's measurer: every timing runs in its timing process
    input_size: int
    folder: Path
    input_path: Path
    batch: int
    runs: int
    reference_path: Path | None = None
    input_speedup: float = 1.0  # set by input_alone
    count: int = 0

    def export(self, model: nn.Module) -> Path:
        self.count += 1
        return export_onnx(model, self.folder / f"m{self.count}.onnx", self.input_size)

    def shares_saved(self, models: list[nn.Module], runs_factor: int = 1
                     ) -> tuple[list[float], float, bool]:
        """The share of the input's latency each model saves, the noise of the timing (all
        are timed in turn with the input and a copy of it, whose deviation from the input
        is that noise), and whether the timing stayed disturbed by other processes."""
        paths = [self.export(model) for model in models]
        timed = self.timer.time_in_turn([self.input_path, self.input_path, *paths],
                                        runs_factor * self.runs, batch=self.batch)
        for path in paths:
            path.unlink()
        ratios = timed.ratios
        return [1.0 - 1.0 / ratio for ratio in ratios[2:]], abs(1.0 - 1.0 / ratios[1]), \
            timed.disturbed

    def input_alone(self) -> WholeTiming:
        """The stage's input against the reference (or a copy of itself), which sets
        input_speedup for every later timing."""
        timed = self._against_reference(self.input_path)
        self.input_speedup = timed.speedup if self.reference_path else 1.0
        return replace(timed, speedup=self.input_speedup, ratio=1.0)

    def whole(self, model: nn.Module) -> WholeTiming:
        """A planned model against the reference, two models in turn."""
        path = self.export(model)
        try:
            return self._against_reference(path)
        finally:
            path.unlink()

    def _against_reference(self, path: Path) -> WholeTiming:
        timed = self.timer.time_in_turn([self.reference_path or self.input_path, path],
                                        WHOLE_MODEL_FACTOR * self.runs, batch=self.batch)
        speedup = timed.ratios[1]
        return WholeTiming(speedup, speedup / self.input_speedup, timed.medians_ms[1],
                           timed.ratio_spreads[1] if timed.ratio_spreads else None,
                           timed.disturbed)

"""How much does each structural cut cost in accuracy, and what does it save?

The candidates are modules a stage may remove or shrink: squeeze-excite gates (replaced by
identity), residual blocks (replaced by identity: the skip connection carries on alone), and
the channels of each prunable layer group at a few ratios. Each candidate is applied alone
to a copy of the model, BatchNorm statistics are re-estimated on training images (no
training, as AIMET's greedy compression-ratio selection does), and the copy's val macro F1
is measured with the MACs and, on request, the ONNX Runtime latency it saves.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

from torch import nn
from torch.utils.data import Dataset

from compress.measure.macs import count_macs
from compress.measure.metrics import model_macro_f1
from compress.ops.batchnorm import recalibrate_batchnorm
from compress.ops.blocks import replace_with_identity, residual_block_paths, squeeze_excite_paths
from compress.ops.pruning import prunable_groups, prune_groups


@dataclass(frozen=True)
class Cut:
    kind: str  # "squeeze_excite", "residual_block" or "prune"
    target: str  # module path (for prune: the group's root layer)
    ratio: float  # fraction of channels removed (1.0 for a removed module)
    macro_f1: float  # after the cut and BatchNorm re-estimation, no training
    f1_drop: float  # baseline macro F1 - macro_f1
    macs_saved: int
    latency_saved: float | None = None  # fraction of the batch-1 latency saved (ORT, interleaved)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SensitivityContext:
    """What every candidate is evaluated with."""

    input_size: int
    classes: list[str]
    calibration: Dataset  # training images through the test transform
    val: Dataset
    recalibration_batches: int = 8
    measure_latency: bool = False
    latency_runs: int = 100
    seed: int = 0
    # A stage passes its measurer's model_macro_f1, so that the pipeline's one measurer
    # judges its cuts; None: model_macro_f1 (compress analyze, tests).
    macro_f1_of: Callable[[nn.Module, Dataset], float] | None = None

    def evaluate(self, model: nn.Module) -> float:
        recalibrate_batchnorm(model, self.calibration, self.recalibration_batches,
                              seed=self.seed)
        if self.macro_f1_of is not None:
            return self.macro_f1_of(model, self.val)
        return model_macro_f1(model, self.val, self.classes)


def _latency_saved(original: nn.Module, changed: nn.Module, ctx: SensitivityContext) -> float:
    from compress.measure.latency import compare_latency
    from compress.measure.runners import OrtRunner
    from compress.ops.onnx_export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        paths = [export_onnx(m, Path(tmp) / f"{i}.onnx", ctx.input_size)
                 for i, m in enumerate((original, changed))]
        comparison = compare_latency(OrtRunner.open(paths[0]), OrtRunner.open(paths[1]),
                                     ctx.input_size, runs=ctx.latency_runs)
    return 1.0 - comparison.b.median_ms / comparison.a.median_ms


def module_cuts(model: nn.Module, ctx: SensitivityContext, kinds: Iterable[str],
                progress: Callable[[str], None] = lambda _: None) -> tuple[float, list[Cut]]:
    """The baseline's macro F1 (after the same BatchNorm re-estimation) and one Cut per
    squeeze-excite gate and/or residual block removed alone."""
    baseline_model = copy.deepcopy(model)
    baseline_f1 = ctx.evaluate(baseline_model)
    baseline_macs = count_macs(model, ctx.input_size)
    finders = {"squeeze_excite": squeeze_excite_paths, "residual_block": residual_block_paths}
    cuts = []
    for kind in kinds:
        for path in finders[kind](model):
            progress(f"{kind} {path}")
            changed = replace_with_identity(copy.deepcopy(model), [path])
            f1 = ctx.evaluate(changed)
            saved = _latency_saved(baseline_model, changed, ctx) if ctx.measure_latency else None
            cuts.append(Cut(kind, path, 1.0, f1, baseline_f1 - f1,
                            baseline_macs - count_macs(changed, ctx.input_size), saved))
    return baseline_f1, cuts


def prune_cuts(model: nn.Module, ctx: SensitivityContext, ratios: Iterable[float],
               importance: str = "l2", round_to: int = 8,
               progress: Callable[[str], None] = lambda _: None) -> tuple[float, list[Cut]]:
    """The baseline's macro F1 and one Cut per (channel group, ratio), each pruned alone."""
    baseline_f1 = ctx.evaluate(copy.deepcopy(model))
    baseline_macs = count_macs(model, ctx.input_size)
    cuts = []
    for group in prunable_groups(model, ctx.input_size):
        for ratio in ratios:
            progress(f"prune {group} {ratio:.2f}")
            changed = prune_groups(copy.deepcopy(model), ctx.input_size, {group: ratio},
                                   importance, round_to)
            f1 = ctx.evaluate(changed)
            saved = _latency_saved(model, changed, ctx) if ctx.measure_latency else None
            cuts.append(Cut("prune", group, ratio, f1, baseline_f1 - f1,
                            baseline_macs - count_macs(changed, ctx.input_size), saved))
    return baseline_f1, cuts

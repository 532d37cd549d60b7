"""Structured channel pruning with torch-pruning's dependency graph.

Coupled layers (residual adds, squeeze-excite gates, depthwise convs) shrink together, so
the result is a smaller dense model. The classifier's output width never changes.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, model_validator
from torch import nn

from compress.errors import StageFailed
from compress.measure.macs import count_macs, layer_positions, macs_from_shapes
from compress.models import classifier_layer
from compress.ops.batchnorm import recalibrate_batchnorm
from compress.ops.pruning import PruningUnit, broken_module_type, prune_units, pruning_units
from compress.stages.base import (
    ReportBars,
    ReportSection,
    ReportText,
    Stage,
    StageConfig,
    StageContext,
    StageOutput,
    StageResult,
)
from compress.stages.registry import register_stage

# A MACs target is approached on a grid of uniform ratios up to 0.95, 0.95 / 512 (< 0.002)
# apart, by a search that interpolates (see smallest_step_reaching).
_MAX_RATIO = 0.95
_RATIO_STEPS = 512
_BN_BATCH = 32  # images per batch of the BatchNorm re-estimation after the cut


@dataclass(frozen=True)
class PruneResult(StageResult):
    importance: str = ""
    ratio: str | float | None = None  # as configured; None: approach target_macs
    uniform_ratio: float | None = None  # the ratio every group lost (found for target_macs)
    steps: int | None = None  # pruning steps taken (uniform ratios)
    untraced: list[str] = field(default_factory=list)  # blocks torch-pruning cannot trace
    macs_before: int = 0
    macs_after: int = 0
    macs_kept: float = 1.0
    widths: dict[str, list[int]] = field(default_factory=dict)  # layer -> [before, after]
    ratios: dict[str, float] = field(default_factory=dict)  # auto: group -> ratio
    sensitivity: dict[str, Any] | None = None  # auto: the analysis it chose from
    # Training images the BatchNorm statistics were measured on after the cut (0: none,
    # without a data folder).
    batchnorm_images: int = 0


class PruneConfig(StageConfig):
    importance: Literal["l1", "l2", "taylor", "bn-scale"] = "l2"
    ratio: Literal["auto"] | float | None = Field(
        None, description="fraction of channels removed, or auto: per-group ratios from a "
        "sensitivity analysis that reach target_macs where accuracy suffers least")
    target_macs: float | None = Field(None, gt=0, lt=1,
                                      description="fraction of the input MACs to keep")
    global_pruning: bool = False
    iterative_steps: int = Field(1, ge=1, le=100)
    round_to: int = Field(8, ge=1)
    ignore: list[str] = Field(default_factory=list, description="module name patterns kept")
    taylor_batches: int = Field(4, ge=1, description="training batches for taylor gradients")
    sensitivity_ratios: list[float] = Field(
        default_factory=lambda: [0.25, 0.5, 0.75], description="auto: ratios tried per group")
    calibration_images: int = Field(256, ge=8, description="training images the BatchNorm "
                                    "statistics are measured on after the cut (and, with "
                                    "auto, the sensitivity analysis's)")

    @model_validator(mode="after")
    def _one_amount(self):
        if self.ratio == "auto":
            if self.target_macs is None:
                raise ValueError("ratio: auto needs target_macs")
        elif (self.ratio is None) == (self.target_macs is None):
            raise ValueError("ratio or target_macs: give exactly one of them")
        elif self.ratio is not None and not 0 < self.ratio < 1:
            raise ValueError("ratio must be between 0 and 1 (exclusive), or auto")
        if any(not 0 < r < 1 for r in self.sensitivity_ratios):
            raise ValueError("sensitivity_ratios must lie between 0 and 1 (exclusive)")
        return self


def _matching(model: nn.Module, pattern: str) -> list[nn.Module]:
    return [m for name, m in model.named_modules() if name and fnmatch.fnmatchcase(name, pattern)]


def _untraced_note(untraced: list[str], units: list[PruningUnit]) -> str:
    shown = ", ".join(untraced[:4]) + (f" and {len(untraced) - 4} more" if len(untraced) > 4
                                       else "")
    return (f"torch-pruning cannot trace {shown}: pruned inside {len(units)} blocks it can "
            "trace, whose outputs keep their widths")


@dataclass(frozen=True)
class _Uniform:
    """A model pruned at one ratio everywhere, with what was traced to prune it."""

    model: nn.Module
    units: list[PruningUnit]
    untraced: list[str]  # blocks torch-pruning cannot trace
    ratio: float = 0.0
    steps: int = 1
    left_whole: list[str] = field(default_factory=list)  # layer types pruning breaks


@register_stage
class Prune(Stage):
    name = "prune"
    Config = PruneConfig
    config: PruneConfig

    def needs_data(self) -> bool:
        # ratio: auto falls back to uniform ratios without data (see apply), so that a run
        # without a data folder still reaches the recipe's size
        return self.config.importance == "taylor"

    def check(self, model: nn.Module) -> None:
        for pattern in self.config.ignore:
            if not _matching(model, pattern):
                raise ValueError(f"ignore pattern {pattern!r} matches no layer of the model")

    def _taylor_gradients(self, model: nn.Module, ctx: StageContext) -> None:
        from compress.data.folders import make_loader

        loader = make_loader(ctx.data.train, ctx.data.batch_size, shuffle=True, seed=ctx.seed)
        model.zero_grad()
        model.eval()  # BN statistics stay as trained; only gradients are wanted
        for i, (images, labels) in enumerate(loader):
            if i == self.config.taylor_batches:
                break
            loss = nn.functional.cross_entropy(model(images.to(ctx.device)), labels.to(ctx.device))
            loss.backward()

    @classmethod
    def report_sections(cls, result: dict[str, Any], stage: str) -> list[ReportSection]:
        sections: list[ReportSection] = []
        if result.get("widths"):
            sections.append(ReportBars(f"Channels per layer, stage {stage}", result["widths"],
                                       "output channels"))
        if result.get("sensitivity"):
            sections.append(ReportText(f"Sensitivity measured by stage {stage}",
                                       json.dumps(result["sensitivity"], indent=1)))
        return sections

    def apply(self, model: nn.Module, ctx: StageContext) -> StageOutput:
        cfg = self.config
        names = {m: n for n, m in model.named_modules()}
        kept = [names[classifier_layer(model)]] + \
            [names[m] for pattern in cfg.ignore for m in _matching(model, pattern)]
        model = model.to(ctx.device).eval()
        units, untraced = pruning_units(model, ctx.example_input().to(ctx.device), kept)
        notes = []
        if cfg.ratio == "auto":
            if ctx.data is not None and not untraced:
                return self._apply_auto(model, ctx)
            notes.append("ratio: auto needs a data folder for its sensitivity analysis: "
                         "uniform ratios to the same target_macs instead" if ctx.data is None
                         else "ratio: auto needs a model torch-pruning can trace as a whole: "
                         "uniform ratios to the same target_macs instead")
        macs_before = count_macs(model, ctx.input_size)
        widths_before = {n: m.out_channels for n, m in model.named_modules()
                         if isinstance(m, nn.Conv2d)}
        if cfg.importance == "taylor" and cfg.target_macs is not None:
            self._taylor_gradients(model, ctx)  # once: every copy below carries them
        done = self._prune_uniformly(model, ctx, kept, _Uniform(model, units, untraced),
                                     macs_before)
        model = done.model
        model.zero_grad(set_to_none=True)
        if done.untraced:
            notes.append(_untraced_note(done.untraced, done.units))
        if done.left_whole:
            notes.append("pruning breaks " + ", ".join(done.left_whole) + " (fixed sizes "
                         "torch-pruning does not update): left whole, with the blocks around "
                         "them")
        macs_after = count_macs(model, ctx.input_size)
        if cfg.target_macs is not None and macs_after > cfg.target_macs * macs_before * 1.01:
            notes.append(f"target_macs {cfg.target_macs} is out of reach: "
                         f"{macs_after / macs_before:.2f} kept")
        widths = {n: [widths_before[n], m.out_channels] for n, m in model.named_modules()
                  if isinstance(m, nn.Conv2d) and n in widths_before
                  and m.out_channels != widths_before[n]}
        return StageOutput(model.cpu(), PruneResult(
            note="; ".join(notes), importance=cfg.importance, ratio=cfg.ratio,
            uniform_ratio=round(done.ratio, 4), steps=done.steps, macs_before=macs_before,
            macs_after=macs_after, macs_kept=macs_after / macs_before, widths=widths,
            untraced=done.untraced, batchnorm_images=self._measure_batchnorm(model, ctx)))

    def _measure_batchnorm(self, model: nn.Module, ctx: StageContext) -> int:
        """BatchNorm statistics measured anew for the cut model on training images (through
        the test transform), where there is a data folder; returns how many. A layer that
        lost input channels no longer produces the activations its successor's statistics
        describe: right after a uniform cut to 60 % of the MACs the shipped baseline
        predicted one class (val macro F1 0.064); with its statistics re-measured on 256
        training images, 0.40."""
        if ctx.data is None:
            return 0
        images = ctx.data.calibration_images(self.config.calibration_images, ctx.input_size,
                                             ctx.seed)
        recalibrate_batchnorm(model, images, batches=math.ceil(len(images) / _BN_BATCH),
                              batch_size=_BN_BATCH, seed=ctx.seed)
        return len(images)

    def _prune_uniformly(self, model: nn.Module, ctx: StageContext, kept: list[str],
                         traced: _Uniform, macs_before: int) -> _Uniform:
        """A pruned copy of `model` at one ratio for every unit (the configured one, or the
        one that reaches target_macs); a layer type that pruning breaks is left whole, with
        the units around it, and the copy pruned again."""
        cfg = self.config
        example = ctx.example_input().to(ctx.device)
        positions = layer_positions(model, ctx.input_size)
        units, untraced = traced.units, traced.untraced
        avoided: set[str] = set()
        left_whole: list[str] = []
        while True:
            if cfg.target_macs is None:
                pruned, ratio, steps = copy.deepcopy(model), cfg.ratio, cfg.iterative_steps
                gradients = (lambda: self._taylor_gradients(pruned, ctx)) \
                    if cfg.importance == "taylor" else None
                prune_units(pruned, units, ratio, cfg.importance, cfg.round_to,
                            cfg.global_pruning, steps, before_step=gradients)
            else:
                pruned, ratio = self._pruned_to_target(model, units, positions,
                                                       cfg.target_macs * macs_before)
                steps = 1
            broken = broken_module_type(pruned, example)
            if broken is None:
                return _Uniform(pruned, units, untraced, ratio, steps, left_whole)
            paths = {n for n, m in model.named_modules() if type(m).__name__ == broken}
            if paths <= avoided:
                raise StageFailed(f"pruning breaks the model at a {broken} even with every "
                                  "one of them left whole")
            avoided |= paths
            left_whole.append(f"{broken} ({len(paths)})")
            units, untraced = pruning_units(model, example, kept, frozenset(avoided))

    def _pruned_to_target(self, model: nn.Module, units: list[PruningUnit],
                          positions: dict[str, tuple[int, int]],
                          target: float) -> tuple[nn.Module, float]:
        """A copy of `model` pruned in one step at the smallest grid ratio whose pruning
        reaches `target` MACs (the largest ratio where none does), and that ratio; MACs are
        counted from the pruned copies' shapes (no forward pass)."""
        cfg = self.config
        reaching: dict[int, nn.Module] = {}  # the latest copy that reached it: the answer

        def pruned_at(step: int) -> nn.Module:
            return prune_units(copy.deepcopy(model), units, _MAX_RATIO * step / _RATIO_STEPS,
                               cfg.importance, cfg.round_to, cfg.global_pruning)

        def macs_at(step: int) -> int:
            trial = pruned_at(step)
            macs = sum(macs_from_shapes(trial, positions).values())
            if macs <= target:
                reaching.clear()
                reaching[step] = trial
            return macs

        unpruned = sum(macs_from_shapes(model, positions).values())
        step = smallest_step_reaching(macs_at, target, _RATIO_STEPS, unpruned)
        # The largest ratio is the answer untried when no smaller one reaches the target.
        return (reaching[step] if step in reaching else pruned_at(step),
                _MAX_RATIO * step / _RATIO_STEPS)

    def _apply_auto(self, model: nn.Module, ctx: StageContext) -> StageOutput:
        """Per-group ratios from the sensitivity of each group alone (see
        compress.sensitivity.allocate_ratios), applied in one step."""
        from compress.ops.pruning import prune_groups
        from compress.sensitivity.allocation import allocate_ratios
        from compress.sensitivity.cuts import SensitivityContext, prune_cuts

        cfg = self.config
        ignored = [m for pattern in cfg.ignore for m in _matching(model, pattern)]
        model = model.cpu().eval()
        calibration = ctx.data.calibration_images(cfg.calibration_images, ctx.input_size,
                                                  ctx.seed)
        sensitivity = SensitivityContext(ctx.input_size, ctx.classes, calibration,
                                         ctx.data.decision_split, seed=ctx.seed,
                                         macro_f1_of=ctx.measurer.model_macro_f1)
        baseline_f1, cuts = prune_cuts(model, sensitivity, cfg.sensitivity_ratios,
                                       cfg.importance, cfg.round_to)
        cuts = [c for c in cuts if not any(c.target == n for n, m in model.named_modules()
                                           if m in ignored)]
        macs_before = count_macs(model, ctx.input_size)
        positions = layer_positions(model, ctx.input_size)

        def macs_of(ratios: dict[str, float]) -> int:
            # From the pruned copy's widths: the allocation asks for about 60 copies, and a
            # forward pass through each at full resolution cost it a third of its time.
            pruned = prune_groups(copy.deepcopy(model), ctx.input_size, ratios,
                                  cfg.importance, cfg.round_to, ignored)
            return sum(macs_from_shapes(pruned, positions).values())

        ratios = allocate_ratios(cuts, macs_of, int(cfg.target_macs * macs_before))
        prune_groups(model, ctx.input_size, ratios, cfg.importance, cfg.round_to, ignored)
        macs_after = count_macs(model, ctx.input_size)
        return StageOutput(model, PruneResult(
            importance=cfg.importance, ratio="auto", ratios=ratios, macs_before=macs_before,
            macs_after=macs_after, macs_kept=macs_after / macs_before,
            sensitivity={"baseline_macro_f1": baseline_f1, "cuts": [c.as_dict() for c in cuts]},
            batchnorm_images=self._measure_batchnorm(model, ctx)))


def smallest_step_reaching(macs_at: Callable[[int], int], target: float, steps: int,
                           unpruned: float) -> int:
    """The smallest step in 1..`steps` whose MACs, `macs_at(step)`, are at most `target`
    (`steps` itself where none below is, without counting its MACs), for MACs that never
    grow with the step; `unpruned` is the MACs at step 0.

    A uniform ratio r leaves about (1 - r)^2 of the MACs, so the square root of the MACs is
    nearly linear in the step: each call aims where the line through the bracket's ends
    crosses the target, and a call that does not halve the bracket is followed by a
    bisection (so never more than about twice bisection's log2(steps) calls). Rounding
    widths to round_to makes the MACs a staircase whose edges no interpolation finds, so
    the gain is modest: 5-8 calls against bisection's 9 on six torchvision models
    (MobileNetV2/V3, ResNet-18, EfficientNet-B0, DenseNet-121 at targets 0.4-0.7), 11 on
    a tiny model with few, wide steps (tests/stages/test_prune_target.py)."""
    low, high = 0, steps
    root_low, root_high = math.sqrt(unpruned), math.sqrt(unpruned) * (1 - _MAX_RATIO)
    root_target = math.sqrt(max(target, 0.0))
    bisect_next = False
    while high - low > 1:
        width = high - low
        if bisect_next:
            step = (low + high) // 2
        else:
            share = (root_low - root_target) / max(root_low - root_high, 1e-12)
            step = min(max(math.ceil(low + share * width), low + 1), high - 1)
        macs = macs_at(step)
        if macs <= target:
            high, root_high = step, math.sqrt(macs)
        else:
            low, root_low = step, math.sqrt(macs)
        bisect_next = not bisect_next and 2 * (high - low) > width
    return high

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

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from compress.data import make_loader
from compress.evaluate import classification_metrics, predict
from compress.measure.macs import count_macs

SE_TYPE_NAMES = ("SqueezeExcitation",)  # Kindle's and torchvision's squeeze-excite gates


def squeeze_excite_paths(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules()
            if type(module).__name__ in SE_TYPE_NAMES]


def residual_block_paths(model: nn.Module) -> list[str]:
    """Blocks whose output is input + f(input): removing f leaves a working network."""
    return [name for name, module in model.named_modules()
            if getattr(module, "identity", False) is True
            or getattr(module, "use_res_connect", False) is True]


def replace_with_identity(model: nn.Module, paths: Iterable[str]) -> nn.Module:
    for path in paths:
        model.set_submodule(path, nn.Identity())
    return model


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: Dataset, batches: int = 8,
                          batch_size: int = 32, seed: int = 0) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance on `batches` batches of
    training images (cumulative average, weights untouched); returns the model in eval mode.
    A structural cut shifts the statistics downstream; without this, a cut that costs
    nothing after a short fine-tune can look catastrophic."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.eval()
    for norm in norms:
        norm.train()
    device = next(model.parameters()).device
    loader = make_loader(images, batch_size, shuffle=True, seed=seed)
    for index, (batch, _) in enumerate(loader):
        if index >= batches:
            break
        model(batch.to(device))
    for norm, momentum in zip(norms, saved):
        norm.momentum = momentum
    return model.eval()


def val_macro_f1(model: nn.Module, val: Dataset, classes: list[str],
                 batch_size: int = 64) -> float:
    with torch.no_grad():
        targets, predictions = predict(model, make_loader(val, batch_size, shuffle=False),
                                       next(model.parameters()).device)
    return classification_metrics(targets, predictions, classes)["macro_f1"]


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

    def evaluate(self, model: nn.Module) -> float:
        recalibrate_batchnorm(model, self.calibration, self.recalibration_batches,
                              seed=self.seed)
        return val_macro_f1(model, self.val, self.classes)


def _latency_saved(original: nn.Module, changed: nn.Module, ctx: SensitivityContext) -> float:
    from compress.measure.latency import compare_latency
    from compress.measure.runners import OrtRunner
    from compress.onnx_export import export_onnx

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


def calibration_subset(dataset: Dataset, count: int, seed: int = 0) -> Dataset:
    order = np.random.default_rng(seed).permutation(len(dataset))[:count]
    return Subset(dataset, order.tolist())


def classifier_layer(model: nn.Module) -> nn.Module:
    """The last Conv2d or Linear: its output is the model's output, its width is fixed."""
    last = None
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            last = module
    if last is None:
        raise ValueError("model has no Conv2d or Linear layer")
    return last


def prunable_groups(model: nn.Module, input_size: int,
                    ignored: list[nn.Module] | None = None) -> list[str]:
    """Names of the root layers of torch-pruning's channel groups (coupled layers prune
    together), the classifier's output excluded."""
    import torch_pruning as tp

    names = {module: name for name, module in model.named_modules()}
    graph = tp.DependencyGraph().build_dependency(
        model.eval(), example_inputs=torch.zeros(1, 3, input_size, input_size))
    ignored = [classifier_layer(model)] + list(ignored or [])
    return [names[group[0].dep.target.module]
            for group in graph.get_all_groups(ignored_layers=ignored)]


def prune_groups(model: nn.Module, input_size: int, ratios: dict[str, float],
                 importance: str = "l2", round_to: int = 8,
                 ignored: list[nn.Module] | None = None) -> nn.Module:
    """Prune each named group by its own ratio, in place, in one torch-pruning step.

    A ratio is capped so that at least `round_to` channels stay: torch-pruning skips a group
    whose rounded width would reach zero, so without the cap a larger ratio could prune
    less than a smaller one."""
    import torch_pruning as tp

    from compress.stages.prune import importance_criterion

    modules = dict(model.named_modules())
    capped = {}
    for name, ratio in ratios.items():
        layer = modules[name]
        width = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
        # At exactly 1 - round_to / width torch-pruning already prunes nothing: stay below.
        ratio = min(ratio, 1.0 - round_to / width - 0.01) if width > round_to else 0.0
        if ratio > 0:
            capped[layer] = ratio
    pruner = tp.pruner.BasePruner(
        model.eval(), torch.zeros(1, 3, input_size, input_size),
        importance=importance_criterion(importance), pruning_ratio=0.0,
        pruning_ratio_dict=capped,
        ignored_layers=[classifier_layer(model)] + list(ignored or []), round_to=round_to)
    pruner.step()
    return model


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


def _ratio_within(drop_budget: float, points: list[tuple[float, float]]) -> float:
    """The largest ratio whose (piecewise-linear, made monotone) F1 drop is within budget."""
    best, previous_ratio, previous_drop = 0.0, 0.0, 0.0
    for ratio, drop in sorted(points):
        drop = max(drop, previous_drop)
        if drop <= drop_budget:
            best = ratio
        else:
            if drop > previous_drop:
                fraction = (drop_budget - previous_drop) / (drop - previous_drop)
                best = max(best, previous_ratio + fraction * (ratio - previous_ratio))
            break
        previous_ratio, previous_drop = ratio, drop
    return best


def allocate_ratios(cuts: list[Cut], macs_of: Callable[[dict[str, float]], int],
                    target_macs: int, iterations: int = 30) -> dict[str, float]:
    """Per-group pruning ratios that reach `target_macs` where it costs least accuracy.

    As AIMET's greedy selection: every group gets the largest ratio whose own F1 drop stays
    within a common budget, and the budget is bisected until the model's MACs
    (`macs_of(ratios)`) just reach the target. Drops between measured ratios are
    interpolated, so the MACs move smoothly with the budget."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for cut in cuts:
        if cut.kind == "prune":
            curves.setdefault(cut.target, []).append((cut.ratio, cut.f1_drop))
    if not curves:
        raise ValueError("no pruning sensitivity to allocate from")

    def ratios(budget: float) -> dict[str, float]:
        return {group: _ratio_within(budget, points) for group, points in curves.items()}

    drops = [max(0.0, d) for points in curves.values() for _, d in points]
    low, high = -1e-9, max(drops) + 1e-6
    if macs_of(ratios(high)) > target_macs:
        raise ValueError("the target needs more than the largest ratios analysed: add larger "
                         "ratios or raise the target")
    low, high = _bisect(low, high, lambda budget: macs_of(ratios(budget)) > target_macs,
                        iterations)
    # Groups with equal drops move together, so the MACs can jump past the target between
    # two budgets: blend the ratios of the two budgets to land close to it.
    below, above = ratios(low), ratios(high)

    def blend(weight: float) -> dict[str, float]:
        return {g: below[g] + weight * (above[g] - below[g]) for g in curves}

    _, weight = _bisect(0.0, 1.0, lambda w: macs_of(blend(w)) > target_macs, iterations)
    return blend(weight)


def _bisect(low: float, high: float, too_low: Callable[[float], bool],
            iterations: int) -> tuple[float, float]:
    """Narrow [low, high] around the point where too_low(x) turns False (it is False at
    high); returns the final bracket."""
    for _ in range(iterations):
        middle = (low + high) / 2
        if too_low(middle):
            low = middle
        else:
            high = middle
    return low, high

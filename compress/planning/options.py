"""The cuts a latency plan chooses from, and applying a chosen set of them to a model.

Every option changes one place of the model: a channel group loses a share of its channels
(torch-pruning), a layer becomes low-rank factors (SVD of a 1x1 conv or Linear layer,
Tucker-2 of a k x k conv) at a share of its widths, a squeeze-excite gate or a whole
residual block becomes an identity. Options of one place exclude each other; a removed
module also excludes every option inside it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from torch import nn

from compress.measure.macs import layer_macs
from compress.models import classifier_layer
from compress.ops.blocks import replace_with_identity, residual_block_paths, squeeze_excite_paths
from compress.ops.decomposition import low_rank_replacement
from compress.ops.pruning import prunable_groups, prune_groups

KINDS = ("prune", "low_rank", "squeeze_excite", "residual_block")
REMOVALS = ("squeeze_excite", "residual_block")


@dataclass(frozen=True)
class Option:
    kind: str  # one of KINDS
    target: str  # prune: the group's root layer; low_rank: the layer; else the module removed
    amount: float = 1.0  # prune: share of channels removed; low_rank: share of widths kept

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.target}:{self.amount:g}"

    @property
    def place(self) -> tuple[str, str]:
        """Options of the same place exclude each other."""
        return self.kind, self.target

    def excludes(self, other: Option) -> bool:
        """A removed module takes every option inside it (or around it) with it."""
        if self.place == other.place:
            return True
        removal = self if self.kind in REMOVALS else other if other.kind in REMOVALS else None
        if removal is None:
            return False
        rest = other if removal is self else self
        return _inside(rest.target, removal.target) or _inside(removal.target, rest.target)


def _inside(path: str, container: str) -> bool:
    return path == container or path.startswith(container + ".")


def candidate_options(model: nn.Module, input_size: int, kinds: list[str],
                      prune_ratios: list[float], rank_fractions: list[float],
                      ignore: list[str] = (), min_layer_share: float = 0.0) -> list[Option]:
    """Every option of `kinds` the model offers. The classifier keeps its output width and
    is never factorised; low-rank factors only where a layer holds `min_layer_share` of the
    model's MACs and the factors would be smaller."""
    modules = dict(model.named_modules())
    ignored = [modules[name] for name in ignore if name in modules]
    options: list[Option] = []
    if "prune" in kinds:
        options += [Option("prune", group, ratio)
                    for group in prunable_groups(model, input_size, ignored)
                    for ratio in prune_ratios]
    if "low_rank" in kinds:
        skipped = {classifier_layer(model)} | set(ignored)
        macs = layer_macs(model, input_size)
        total = sum(macs.values())
        for name, module in model.named_modules():
            if module in skipped or macs.get(name, 0) < min_layer_share * total:
                continue
            options += [Option("low_rank", name, fraction) for fraction in rank_fractions
                        if low_rank_replacement(module, fraction) is not None]
    if "squeeze_excite" in kinds:
        options += [Option("squeeze_excite", path) for path in squeeze_excite_paths(model)]
    if "residual_block" in kinds:
        options += [Option("residual_block", path) for path in residual_block_paths(model)]
    return options


def apply_options(model: nn.Module, options: list[Option], input_size: int,
                  importance: str = "l2", round_to: int = 8) -> nn.Module:
    """A copy of `model` with every option applied: channels first (torch-pruning names
    groups by their layers, which removals would move), then removals, then factors at
    the pruned widths."""
    changed = copy.deepcopy(model)
    ratios = {o.target: o.amount for o in options if o.kind == "prune"}
    if ratios:
        prune_groups(changed, input_size, ratios, importance, round_to)
    replace_with_identity(changed, [o.target for o in options if o.kind in REMOVALS])
    for option in options:
        if option.kind == "low_rank":
            factors = low_rank_replacement(changed.get_submodule(option.target), option.amount)
            if factors is not None:  # pruning can leave a layer too thin to factorise
                changed.set_submodule(option.target, factors)
    return changed

"""Structured channel pruning with torch-pruning: importance criteria, the prunable channel
groups of a model, and pruning each group by its own ratio.
"""

from __future__ import annotations

import torch
from torch import nn

from compress.ops.blocks import classifier_layer


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

    from compress.ops.pruning import importance_criterion

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


def importance_criterion(name: str):
    import torch_pruning as tp

    return {
        "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
        "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
        "taylor": lambda: tp.importance.GroupTaylorImportance(),
        "bn-scale": lambda: tp.importance.BNScaleImportance(),
    }[name]()

"""Freeze policies for fine-tuning: which parameters train, and whether BN statistics move.

none                everything trains
decomposed          only the factor layers of decomposed convs / linears train
convs               only conv weights train; batch-norm and linear layers are frozen
                    (the competition teams' `--freeze 1`)
all-but-classifier  only the last layer (the classifier) trains
bn                  everything trains, batch-norm running statistics stay fixed
[patterns]          parameters whose names match any pattern are frozen
"""

from __future__ import annotations

import fnmatch
from typing import Any

from torch import nn

from compress.models import build_model, classifier_layer
from compress.models.module_spec import structural_edits

POLICIES = ("none", "decomposed", "convs", "all-but-classifier", "bn")


def decomposed_layers(model: nn.Module, base_spec: dict[str, Any]) -> list[str]:
    """Paths where a Conv2d / Linear of the base model was replaced by factor layers."""
    base = dict(build_model(base_spec).named_modules())
    return [edit["path"] for edit in structural_edits(model, build_model(base_spec))
            if edit.get("module", {}).get("type") == "Sequential"
            and isinstance(base.get(edit["path"]), (nn.Conv2d, nn.Linear))]


def apply_freeze(model: nn.Module, policy: str | list[str],
                 base_spec: dict[str, Any]) -> tuple[list[str], bool]:
    """Set requires_grad per the policy; return (trainable parameter names, freeze_bn_stats)."""
    model.requires_grad_(True)
    freeze_bn_stats = False
    if isinstance(policy, list):
        for name, param in model.named_parameters():
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in policy):
                param.requires_grad_(False)
    elif policy == "decomposed":
        factors = decomposed_layers(model, base_spec)
        model.requires_grad_(False)
        for path in factors:
            model.get_submodule(path).requires_grad_(True)
    elif policy == "convs":
        model.requires_grad_(False)
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.requires_grad_(True)
    elif policy == "all-but-classifier":
        model.requires_grad_(False)
        classifier_layer(model).requires_grad_(True)
    elif policy == "bn":
        freeze_bn_stats = True
    elif policy != "none":
        raise ValueError(f"unknown freeze policy {policy!r} (expected one of {POLICIES} "
                         "or a list of parameter name patterns)")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    return trainable, freeze_bn_stats

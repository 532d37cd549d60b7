"""Structured channel pruning with torch-pruning: importance criteria, the prunable channel
groups of a model, and pruning each group by its own ratio.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from compress.models import classifier_layer


def prunable_groups(model: nn.Module, input_size: int,
                    ignored: list[nn.Module] | None = None) -> list[str]:
    """Names of the root layers of torch-pruning's channel groups (coupled layers prune
    together), the classifier's output excluded."""
    import torch_pruning as tp

    names = {module: name for name, module in model.named_modules()}
    with _quiet():
        graph = tp.DependencyGraph().build_dependency(
            model.eval(), example_inputs=torch.zeros(1, 3, input_size, input_size))
    ignored = [classifier_layer(model)] + list(ignored or [])
    return [names[group[0].dep.target.module]
            for group in graph.get_all_groups(ignored_layers=ignored)]


def prune_groups(model: nn.Module, input_size: int, ratios: dict[str, float],
                 importance: str = "l2", round_to: int = 8,
                 ignored: list[nn.Module] | None = None) -> nn.Module:
    """Prune each named group by its own ratio (capped, see `_capped`), in place, in one
    torch-pruning step."""
    import torch_pruning as tp

    from compress.ops.pruning import importance_criterion

    modules = dict(model.named_modules())
    capped = {}
    for name, ratio in ratios.items():
        ratio = _capped(ratio, modules[name], round_to)
        if ratio > 0:
            capped[modules[name]] = ratio
    with _quiet():
        pruner = tp.pruner.BasePruner(
            model.eval(), torch.zeros(1, 3, input_size, input_size),
            importance=importance_criterion(importance), pruning_ratio=0.0,
            pruning_ratio_dict=capped,
            ignored_layers=[classifier_layer(model)] + list(ignored or []), round_to=round_to)
        pruner.step()
    return model


@contextmanager
def _quiet():
    """torch-pruning warns of every parameter that sits outside a known layer type (ConvNeXt's
    layer_scale) and then prunes its last non-singleton dimension, which is right for them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        yield


def _capped(ratio: float, layer: nn.Module, round_to: int) -> float:
    """`ratio`, lowered so that at least `round_to` channels of the layer stay: at exactly
    1 - round_to / width torch-pruning already skips the group (its rounded width would
    reach zero), so without the cap a larger ratio could prune less than a smaller one."""
    width = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
    return min(ratio, 1.0 - round_to / width - 0.01) if width > round_to else 0.0


def importance_criterion(name: str):
    import torch_pruning as tp

    return {
        "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
        "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
        "taylor": lambda: tp.importance.GroupTaylorImportance(),
        "bn-scale": lambda: tp.importance.BNScaleImportance(),
    }[name]()


# What torch-pruning's graph building raises where it cannot map a block's channels: at a
# reshape it cannot follow (ShuffleNet's channel shuffle) it divides by a channel count it
# inferred as 0, and its look-ups of split offsets and of nodes it never recorded fail.
# Anything else (a bug, memory) is raised, not taken for an untraceable block.
UNTRACEABLE = (ZeroDivisionError, KeyError, IndexError)


@dataclass(frozen=True)
class PruningUnit:
    """A module torch-pruning can build a dependency graph for, with its example input and
    the layers (by name) whose output channels it must keep."""
    path: str
    example: torch.Tensor
    kept: tuple[str, ...]


def pruning_units(model: nn.Module, example: torch.Tensor, kept: list[str],
                  avoided: frozenset[str] = frozenset()) -> tuple[list[PruningUnit], list[str]]:
    """The whole model when torch-pruning can trace it. Otherwise (a channel shuffle, a
    reshape it cannot map, ...) the largest blocks it can trace, each pruned only inside:
    the layers that write a block's output keep their channels, so the untraceable code
    around it sees the same shapes. Modules named in `avoided` (see `broken_module_type`)
    are left whole, and so is every block around them. Also returns the blocks it could not
    trace, and why."""
    names = {module: name for name, module in model.named_modules()}
    units: list[PruningUnit] = []
    untraced: list[str] = []

    def visit(module: nn.Module, example: torch.Tensor) -> None:
        path = names[module]
        if path in avoided:
            return
        if not any(not path or a.startswith(f"{path}.") for a in avoided):
            try:
                graph = _dependency_graph(module, example)
            except UNTRACEABLE as exc:
                untraced.append(f"{path or 'the model'} ({type(exc).__name__})")
            else:
                outputs = [] if module is model else \
                    [names[m] for m in _boundary_layers(graph)]
                inside = [n for n in kept if not path or n == path or n.startswith(f"{path}.")]
                units.append(PruningUnit(path, example, tuple(inside + outputs)))
                return
        # Untraceable, or around an avoided module: its children one by one.
        for child, child_input in _child_inputs(module, example).items():
            visit(child, child_input)

    visit(model, example)
    return units, untraced


def broken_module_type(model: nn.Module, example: torch.Tensor) -> str | None:
    """None when the model runs; else the type of the innermost module whose forward
    failed (timm's MixedConv2d keeps channel splits as a list torch-pruning does not
    update, so a pruned one fails at its split)."""
    stack: list[nn.Module] = []
    failed: list[nn.Module] = []
    hooks = []

    def enter(module: nn.Module, args) -> None:
        stack.append(module)

    def leave(module: nn.Module, args, output) -> None:  # returns None: output unchanged
        stack.pop()

    for module in model.modules():
        hooks.append(module.register_forward_pre_hook(enter))
        hooks.append(module.register_forward_hook(leave))
    try:
        with torch.no_grad():
            model.eval()(example)
    except torch.OutOfMemoryError:  # the machine's limit, not a broken layer
        raise
    except (RuntimeError, ValueError, IndexError):  # what a layer of the wrong width raises
        failed = stack[-1:]
    finally:
        for hook in hooks:
            hook.remove()
    return type(failed[0]).__name__ if failed else None


def _dependency_graph(module: nn.Module, example: torch.Tensor):
    import torch_pruning as tp

    with _quiet():
        return tp.DependencyGraph().build_dependency(module.eval(), example_inputs=example)


def _child_inputs(module: nn.Module, example: torch.Tensor) -> dict[nn.Module, torch.Tensor]:
    """The input of each child that is called once with one tensor (the others cannot be
    traced on their own)."""
    seen: dict[nn.Module, list[torch.Tensor]] = {}
    hooks = [child.register_forward_pre_hook(
        lambda mod, args: seen.setdefault(mod, []).append(args[0].detach()
                                                           if len(args) == 1 and
                                                           isinstance(args[0], torch.Tensor)
                                                           else None))
        for child in module.children()]
    try:
        with torch.no_grad():
            module.eval()(example)
    finally:
        for hook in hooks:
            hook.remove()
    return {child: inputs[0] for child, inputs in seen.items()
            if len(inputs) == 1 and inputs[0] is not None and
            any(p.requires_grad for p in child.parameters())}


def _boundary_layers(graph) -> list[nn.Module]:
    """The layers whose channels are the traced module's input or output channels. Walking
    back from the output through channel-preserving operations (norms, activations,
    additions, concatenations) to the conv / linear layers that write it; and forward from
    the input to the depthwise convs that read it (pruning one prunes its input too)."""
    found, seen = [], set()
    stack = [node for node in graph.module2node.values() if not node.outputs]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node.module, (nn.Conv2d, nn.Linear)):
            found.append(node.module)
        else:
            stack.extend(node.inputs)
    stack, seen = [node for node in graph.module2node.values() if not node.inputs], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        module = node.module
        if isinstance(module, nn.Conv2d) and module.groups > 1:
            found.append(module)  # its output channels are its input channels: go on
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        stack.extend(node.outputs)
    return found


def prune_units(model: nn.Module, units: list[PruningUnit], ratio: float, importance: str,
                round_to: int, global_pruning: bool = False, steps: int = 1,
                before_step=None) -> nn.Module:
    """Prune every unit of `model` by `ratio` in `steps` torch-pruning steps, in place;
    `before_step` runs before each step (taylor importance wants fresh gradients)."""
    import torch_pruning as tp

    modules = dict(model.named_modules())

    def capped(unit: nn.Module) -> dict[nn.Module, float]:  # so that pruning grows with ratio
        return {m: _capped(ratio, m, round_to) for m in unit.modules()
                if isinstance(m, (nn.Conv2d, nn.Linear))}

    with _quiet():
        pruners = [tp.pruner.BasePruner(
            modules[unit.path].eval(), unit.example,
            importance=importance_criterion(importance), global_pruning=global_pruning,
            pruning_ratio=ratio, pruning_ratio_dict=capped(modules[unit.path]),
            iterative_steps=steps, ignored_layers=[modules[name] for name in unit.kept],
            round_to=round_to) for unit in units]
        for _ in range(steps):
            if before_step is not None:
                before_step()
            for pruner in pruners:
                pruner.step()
    return model

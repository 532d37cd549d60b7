"""How long does reaching a MACs target take? compress's prune stage (bisection on a uniform
ratio, MACs counted from layer shapes) against the approach it replaced, timed in the same
run on the same models: torch-pruning stepping its ratio up in 60 iterative steps to 0.95,
with a forward-pass MACs count after every step, stopping at the target.

    python benchmarks/prune_target_speed.py [--size 96] [--target 0.5] [MODEL ...]

Prints, per torchvision model, the seconds of each, the ratio (old / new) and the MACs each
kept. Random weights: the time does not depend on them. Run it alone on the machine.

Reproduces: the prune stage reaching a MACs target by bisection on a uniform ratio, with
MACs counted from shapes, faster than torch-pruning's iterative stepping. Its answer is not
in benchmarks/RESULTS.md: commit 4c3ee70 records the bisection's time on regnet_y_400mf at
96 px (2 s), not the ratio against the old approach.
Run time on the 2-core VM: not timed.
Output: one line per model on stdout: seconds of each approach, their ratio, MACs kept.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
import torch_pruning as tp
import torchvision

import compress


def iterative_steps(model: torch.nn.Module, size: int, target: float) -> float:
    """The replaced approach; returns the share of MACs kept."""
    example = torch.zeros(1, 3, size, size)
    before = tp.utils.count_ops_and_params(model, example)[0]
    classifier = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    pruner = tp.pruner.BasePruner(
        model.eval(), example, importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=0.95, iterative_steps=60, ignored_layers=[classifier], round_to=8)
    for _ in range(60):
        if tp.utils.count_ops_and_params(model, example)[0] <= target * before:
            break
        pruner.step()
    return tp.utils.count_ops_and_params(model, example)[0] / before


def bisection(model: torch.nn.Module, name: str, size: int, target: float) -> float:
    spec = {"kind": "torchvision", "name": name, "num_classes": 6, "kwargs": {}}
    ctx = compress.StageContext(size, [str(i) for i in range(6)], torch.device("cpu"),
                                Path(tempfile.mkdtemp()), spec, echo=lambda line: None)
    output = compress.create_stage("prune", {"target_macs": target}).apply(model, ctx)
    return output.result.macs_kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*",
                        default=["regnet_y_400mf", "convnext_tiny", "resnet50", "mobilenet_v2"])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--target", type=float, default=0.5)
    args = parser.parse_args()
    print(f"{'model':<16}{'60 steps s':>11}{'bisection s':>12}{'ratio':>8}"
          f"{'kept (steps)':>14}{'kept (bisection)':>18}")
    for name in args.models:
        torch.manual_seed(0)
        model = torchvision.models.get_model(name, weights=None, num_classes=6).eval()
        start = time.perf_counter()
        kept_old = iterative_steps(copy.deepcopy(model), args.size, args.target)
        old = time.perf_counter() - start
        start = time.perf_counter()
        kept_new = bisection(model, name, args.size, args.target)
        new = time.perf_counter() - start
        print(f"{name:<16}{old:>11.1f}{new:>12.1f}{old / new:>7.1f}x{kept_old:>14.3f}"
              f"{kept_new:>18.3f}", flush=True)


if __name__ == "__main__":
    main()

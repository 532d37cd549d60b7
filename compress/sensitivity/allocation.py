"""Per-group pruning ratios that reach a MACs target where accuracy suffers least."""

from __future__ import annotations

from typing import Callable

from compress.sensitivity.cuts import Cut


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

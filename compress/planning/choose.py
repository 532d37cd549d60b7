"""Which options meet a latency saving at the least accuracy cost.

A multiple-choice knapsack solved greedily: starting from "keep" everywhere, take the step
(a new option, or a larger one at a place already cut) with the least macro F1 lost per
share of latency saved, skipping options that a chosen one excludes, until the saving is
reached. Steps that cost nothing (or gain F1) go first, the largest saving first.
"""

from __future__ import annotations

from dataclasses import dataclass

from compress.planning.options import Option


@dataclass(frozen=True)
class Priced:
    option: Option
    saved: float  # share of the model's latency saved, alone (from the latency table)
    f1_drop: float  # macro F1 lost alone, after BatchNorm re-estimation, no training


def choose(priced: list[Priced], needed: float) -> tuple[list[Priced], float, bool]:
    """The chosen options, the saving their shares add up to (at least `needed`, unless
    every useful option together saves less), and whether every step that adds a saving was
    taken (nothing left to add)."""
    chosen: dict[tuple[str, str], Priced] = {}
    total = 0.0
    while total < needed:
        best, best_rank = None, None
        for candidate in priced:
            current = chosen.get(candidate.option.place)
            gain = candidate.saved - (current.saved if current else 0.0)
            if gain <= 0 or any(other.option.excludes(candidate.option)
                                for place, other in chosen.items()
                                if place != candidate.option.place):
                continue
            cost = candidate.f1_drop - (current.f1_drop if current else 0.0)
            rank = (cost / gain, -gain) if cost > 0 else (0.0, cost - gain)
            if best_rank is None or rank < best_rank:
                best, best_rank = candidate, rank
        if best is None:
            return list(chosen.values()), total, True
        previous = chosen.get(best.option.place)
        total += best.saved - (previous.saved if previous else 0.0)
        chosen[best.option.place] = best
    return list(chosen.values()), total, False

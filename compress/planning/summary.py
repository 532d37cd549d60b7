"""What a plan's record says about its options: their prices, and per layer whether
low-rank factors or pruning saved more time at no more F1 cost."""

from __future__ import annotations

from typing import Any

from compress.planning.choose import Priced


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 5)


def describe(p: Priced) -> dict[str, Any]:
    return {"kind": p.option.kind, "target": p.option.target, "amount": p.option.amount,
            "saved": round(p.saved, 5), "f1_drop": round(p.f1_drop, 5)}


def low_rank_vs_prune(priced: list[Priced], chosen: list[Priced]) -> list[dict[str, Any]]:
    """Per layer with both options: the low-rank factors that save the most time against
    the pruning of the group rooted at that layer that saves the most at no more F1 cost,
    and which kind the plan took there."""
    taken = {(p.option.kind, p.option.target) for p in chosen}
    rows = []
    for layer in sorted({p.option.target for p in priced if p.option.kind == "low_rank"}):
        low_rank = max((p for p in priced if p.option.place == ("low_rank", layer)),
                       key=lambda p: p.saved)
        prunes = [p for p in priced if p.option.place == ("prune", layer)
                  and p.f1_drop <= low_rank.f1_drop]
        if not any(p.option.place == ("prune", layer) for p in priced):
            continue
        prune = max(prunes, key=lambda p: p.saved, default=None)
        rows.append({
            "layer": layer,
            "low_rank": describe(low_rank),
            "prune": describe(prune) if prune else None,
            "faster_at_no_more_f1_cost": "low_rank" if prune is None or
            low_rank.saved > prune.saved else "prune",
            "by": round(low_rank.saved - (prune.saved if prune else 0.0), 5),
            "plan_took": "low_rank" if ("low_rank", layer) in taken else
            "prune" if ("prune", layer) in taken else "neither"})
    return rows

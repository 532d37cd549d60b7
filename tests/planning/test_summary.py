"""What a plan's record says about its options: rounded prices, and per layer whether
low-rank factors or pruning saved more time at no more F1 cost."""

from __future__ import annotations

from compress.planning.choose import Priced
from compress.planning.options import Option
from compress.planning.summary import describe, low_rank_vs_prune, rounded


def test_prices_are_described_rounded():
    assert rounded(None) is None and rounded(0.1234567) == 0.12346
    assert describe(Priced(Option("prune", "a", 0.5), 0.1234567, 0.0200001)) == {
        "kind": "prune", "target": "a", "amount": 0.5, "saved": 0.12346, "f1_drop": 0.02}


def test_low_rank_against_pruning_per_layer():
    priced = [Priced(Option("low_rank", "a", 0.5), 0.10, 0.02),
              Priced(Option("low_rank", "a", 0.25), 0.20, 0.05),  # a's fastest factors
              Priced(Option("prune", "a", 0.25), 0.15, 0.01),
              Priced(Option("prune", "a", 0.75), 0.30, 0.20),  # faster, but dearer in F1
              Priced(Option("low_rank", "b", 0.25), 0.05, 0.01),
              Priced(Option("prune", "b", 0.5), 0.12, 0.10),  # b: no pruning as cheap
              Priced(Option("low_rank", "c", 0.25), 0.05, 0.01)]  # c: no pruning at all
    rows = low_rank_vs_prune(priced, chosen=[priced[2]])
    assert [row["layer"] for row in rows] == ["a", "b"]
    a, b = rows
    assert a["low_rank"]["amount"] == 0.25 and a["prune"]["amount"] == 0.25
    assert a["faster_at_no_more_f1_cost"] == "low_rank" and a["by"] == 0.05
    assert a["plan_took"] == "prune"
    assert b["prune"] is None and b["faster_at_no_more_f1_cost"] == "low_rank"
    assert b["by"] == 0.05 and b["plan_took"] == "neither"

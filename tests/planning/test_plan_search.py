"""The plan's search on the tiny Kindle MobileNetV3: how it corrects shares that promise
more than the whole model saves. The timing reads latency off MACs plus a fixed overhead
per run, so the search steers on the structure of its plans, never on the load of the
machine; shares are the MACs each cut removes, the residual-block removals' four times
over (one plan's measured / predicted saving then fits no other plan: the case that made
plans from a real table swing between too little and far too much)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from conftest import TINY_MNV3

from compress.measure.macs import count_macs
from compress.models import build_model
from compress.planning.choose import Priced, monotone_shares
from compress.planning.options import KINDS, apply_options, candidate_options
from compress.planning.search import PlanSearch, SearchSettings, _ScaleBracket
from compress.planning.timing import Budget, WholeTiming

SIZE = 32
OVERHEAD_MS = 0.6  # a run's fixed cost: a cut saves a smaller share of time than of MACs
TOLERANCE = 0.05


def _ms(model) -> float:
    return OVERHEAD_MS + count_macs(model, SIZE) / 1e6


@dataclass
class MacsTiming:
    """PlanTiming's whole-model timing against the input, read off MACs."""

    input_ms: float
    input_size: int = SIZE
    reference_path: Path | None = None
    ratios: list[float] = field(default_factory=list)

    def whole(self, model) -> WholeTiming:
        ratio = self.input_ms / _ms(model)
        self.ratios.append(ratio)
        return WholeTiming(ratio, ratio, _ms(model))


@pytest.fixture(scope="module")
def model_and_prices():
    torch.manual_seed(0)
    model = build_model({"kind": "kindle", "config": TINY_MNV3}).eval()
    macs = count_macs(model, SIZE)
    priced = []
    for option in candidate_options(model, SIZE, list(KINDS), [0.25, 0.5, 0.75], [0.25, 0.5]):
        share = 1 - count_macs(apply_options(model, [option], SIZE), SIZE) / macs
        promised = 4 * share if option.kind == "residual_block" else share
        priced.append(Priced(option, promised, share))
    return model, monotone_shares(priced)


@pytest.mark.parametrize("target", [1.4, 1.5])
def test_the_search_lands_within_twice_the_tolerance_where_shares_mislead(model_and_prices,
                                                                          target):
    model, priced = model_and_prices
    timing = MacsTiming(_ms(model))
    found = PlanSearch(model, priced, Budget(target, None, timing.input_ms), timing, None,
                       SearchSettings(6, TOLERANCE, "l2", 8, "input", target),
                       lambda line: None).run()
    # Scaling every share by the last plan's measured / predicted saving alone kept plans at
    # 1.56x and 1.82x here: 12 % and 21 % past the budget.
    assert target <= found.confirmed.ratio <= target * (1 + 2 * TOLERANCE), timing.ratios
    assert found.confirmed.ratio == pytest.approx(timing.input_ms / _ms(found.model))
    assert len(found.refits) <= 7  # refits + 1 timings of whole plans, no more


def test_the_bracket_halves_between_the_last_scales_that_met_and_fell_short():
    bracket = _ScaleBracket()
    assert bracket.next(0.5) == 0.5  # one end only: the proportional correction
    bracket.add(1.0, met=False)
    bracket.add(0.25, met=True)
    assert bracket.next(3.0) == pytest.approx(0.5) and not bracket.closed()
    bracket.add(0.5, met=False)  # short at 0.5: the budget lies between 0.25 and 0.5
    assert bracket.next(3.0) == pytest.approx(0.125 ** 0.5)
    bracket.add(0.6, met=True)  # a later timing contradicts the short end: it wins
    assert (bracket.met_at, bracket.short_at) == (0.6, None)
    assert bracket.next(0.7) == 0.7
    bracket.add(0.603, met=False)
    assert bracket.closed()

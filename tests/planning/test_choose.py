"""The greedy choice of a latency plan on given prices: which options it takes for a
saving, how it replaces a cut inside a removed block, and how prices are corrected."""

from __future__ import annotations

import pytest

from compress.planning.choose import Priced, choose, monotone_shares, repriced
from compress.planning.options import Option


def test_choose_takes_the_cheapest_saving_per_point_and_one_option_per_place():
    a25, a75 = Option("prune", "a", 0.25), Option("prune", "a", 0.75)
    block, inside = Option("residual_block", "b"), Option("low_rank", "b.conv", 0.25)
    priced = [Priced(a25, 0.10, 0.01), Priced(a75, 0.30, 0.20),
              Priced(block, 0.25, 0.02), Priced(inside, 0.05, 0.0)]
    chosen, total, exhausted = choose(priced, 0.30)
    # Free first (inside: 0.05); then the block, which replaces the cut inside it (+0.20
    # for 0.02 F1: 0.1 a unit saved, tied with a25 and the larger step); then a25.
    assert [p.option for p in chosen] == [block, a25] and total == pytest.approx(0.35)
    assert not exhausted
    chosen, total, exhausted = choose(priced, 0.9)  # more than every option can give
    assert exhausted and total < 0.9 and len({p.option.place for p in chosen}) == len(chosen)


def test_the_budget_is_met_by_the_option_that_costs_least_for_it():
    cheap_small, dear_large, cheap_large = (Option("prune", "a", 0.25),
                                            Option("prune", "b", 0.5),
                                            Option("squeeze_excite", "c"))
    priced = [Priced(cheap_small, 0.05, 0.001), Priced(dear_large, 0.40, 0.30),
              Priced(cheap_large, 0.20, 0.02)]
    chosen, total, exhausted = choose(priced, 0.2)
    # 0.1 F1 a unit saved for c, 0.02 for a: a first (too little alone), then c.
    assert [p.option for p in chosen] == [cheap_small, cheap_large]
    assert total == pytest.approx(0.25) and not exhausted
    chosen, total, _ = choose(priced, 0.5)  # only b's saving reaches it, whatever it costs
    assert dear_large in [p.option for p in chosen] and total >= 0.5
    assert choose(priced, 0.0) == ([], 0.0, False)  # nothing asked: nothing cut


def test_free_steps_go_first_the_largest_first_before_any_that_costs():
    gain, free_small, free_large, dear = (Option("prune", "g", 0.25), Option("prune", "s", 0.25),
                                          Option("prune", "l", 0.25), Option("prune", "d", 0.5))
    priced = [Priced(free_small, 0.05, 0.0), Priced(free_large, 0.15, 0.0),
              Priced(gain, 0.02, -0.01), Priced(dear, 0.50, 0.10)]
    # d alone would meet 0.16, but it costs F1 where the others cost none.
    chosen, total, exhausted = choose(priced, 0.16)
    assert [p.option for p in chosen] == [free_large, free_small]
    assert total == pytest.approx(0.20) and not exhausted
    chosen, total, exhausted = choose(priced + [Priced(Option("prune", "x", 0.5), 0.0, 0.0)],
                                      1.0)
    assert [p.option for p in chosen] == [free_large, free_small, gain, dear]
    assert exhausted and total == pytest.approx(0.72)  # x saves nothing: never taken


def test_a_cut_inside_a_plan_costs_at_least_what_it_costs_alone():
    ruinous, cheap, untouched = (Option("prune", "a", 0.75), Option("prune", "b", 0.25),
                                 Option("residual_block", "c"))
    priced = [Priced(ruinous, 0.2, 0.30), Priced(cheap, 0.1, 0.01), Priced(untouched, 0.3, 0.05)]
    # Inside a plan at chance level leaving the ruinous cut out changes nothing (0.0): it
    # stays at its 0.30 alone; the cheap one, ruinous together with the others, goes up.
    corrected = repriced(priced, 0.5, {ruinous: 0.0, cheap: 0.12})
    assert [p.f1_drop for p in corrected] == pytest.approx([0.30, 0.12, 0.05])
    assert [p.saved for p in corrected] == pytest.approx([0.1, 0.05, 0.15])
    chosen, _, _ = choose(corrected, 0.1)
    assert [p.option for p in chosen] == [untouched]


def test_a_larger_cut_of_a_place_is_priced_at_least_as_saving_as_a_smaller_one():
    noisy = [Priced(Option("prune", "a", 0.25), 0.10, 0.0),
             Priced(Option("prune", "a", 0.75), 0.04, 0.1),
             Priced(Option("low_rank", "c", 0.5), 0.08, 0.0),  # keeps more: the smaller cut
             Priced(Option("low_rank", "c", 0.25), 0.02, 0.0),
             Priced(Option("prune", "b", 0.25), 0.01, 0.0),
             Priced(Option("prune", "b", 0.5), 0.05, 0.0),
             Priced(Option("prune", "b", 0.75), 0.03, 0.0)]
    # Shares out of order are pooled to their mean (not raised to the largest: the maximum
    # of noisy timings overstates); shares in order stay as timed.
    assert [p.saved for p in monotone_shares(noisy)] == pytest.approx(
        [0.07, 0.07, 0.05, 0.05, 0.01, 0.04, 0.04])

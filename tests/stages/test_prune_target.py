"""The search for the uniform ratio that reaches a MACs target: the grid step that bisection
to within 0.002 finds, in fewer pruned copies than bisection makes on MobileNet-like
widths, each made once, and the copy at the answer kept rather than pruned again (each copy is a full torch-pruning pass:
4 s on a DenseNet-121)."""

from __future__ import annotations

import random
import statistics

import torch
from conftest import apply_stage, stage_context
from hypothesis import given, settings
from hypothesis import strategies as st

import compress.stages.prune as prune_module
from compress.measure.macs import count_macs
from compress.stages import create_stage
from compress.stages.prune import smallest_step_reaching

STEPS = 512


def chain_macs(widths: list[int], round_to: int, step: int) -> int:
    """MACs of a chain of 3x3 convs whose widths all lose the ratio of `step`, rounded as
    torch-pruning rounds, plus a part pruning does not touch: never grows with the step."""
    ratio = 0.95 * step / STEPS

    def kept(width: int) -> int:
        return max(width - int(ratio * width) // round_to * round_to, round_to)

    return 9 * sum(kept(a) * kept(b) for a, b in zip(widths, widths[1:])) + 500


def bisection_to_tolerance(macs_of_ratio, target: float) -> float:
    """The ratio bisection on [0, 0.95] to within 0.002 returns."""
    low, high = 0.0, 0.95
    if macs_of_ratio(high) > target:
        return high
    while high - low > 0.002:
        middle = (low + high) / 2
        low, high = (low, middle) if macs_of_ratio(middle) <= target else (middle, high)
    return high


@settings(max_examples=300, deadline=None)
@given(widths=st.lists(st.sampled_from([8, 16, 24, 40, 64, 96, 160, 256, 512, 1280]),
                       min_size=2, max_size=60),
       round_to=st.sampled_from([1, 4, 8, 16]), kept=st.floats(0.0, 0.999))
def test_the_search_finds_the_ratio_of_bisection_to_a_tolerance(widths, round_to, kept):
    target = kept * chain_macs(widths, round_to, 0)
    tried = []

    def macs_at(step: int) -> int:
        assert 0 < step < STEPS and step not in tried, (step, tried)
        tried.append(step)
        return chain_macs(widths, round_to, step)

    step = smallest_step_reaching(macs_at, target, STEPS, chain_macs(widths, round_to, 0))
    expected = bisection_to_tolerance(
        lambda ratio: chain_macs(widths, round_to, round(ratio / 0.95 * STEPS)), target)
    assert abs(0.95 * step / STEPS - expected) < 1e-9
    assert len(tried) <= 2 * 9  # at worst a bisection after every interpolation


def test_the_search_takes_fewer_calls_than_bisection_on_mobilenet_like_chains():
    """Bisection on 512 steps always takes 9 calls; interpolating in the root of the MACs
    takes about 5-6 on chains of MobileNet widths at the targets recipes use."""
    rng = random.Random(0)
    calls = []
    for _ in range(500):
        widths = [rng.choice([16, 24, 40, 48, 72, 96, 120, 144, 240, 288, 576, 960])
                  for _ in range(rng.randint(15, 60))]
        round_to, unpruned = rng.choice([1, 8]), chain_macs(widths, 1, 0)
        target = rng.uniform(0.3, 0.9) * unpruned
        tried = []
        smallest_step_reaching(lambda step: tried.append(step) or  # noqa: B023
                               chain_macs(widths, round_to, step), target, STEPS, unpruned)
        calls.append(len(tried))
    assert statistics.mean(calls) < 6.5 and max(calls) <= 18, statistics.mean(calls)


def test_a_target_keeps_the_copy_that_reached_it(tmp_path, tiny_model,
                                                                        tiny_model_spec,
                                                                        monkeypatch):
    pruned, prune_units = [], prune_module.prune_units

    def counted(model, *args, **kwargs):
        pruned.append(prune_units(model, *args, **kwargs))
        return pruned[-1]

    monkeypatch.setattr(prune_module, "prune_units", counted)
    ctx = stage_context(32, ["a", "b", "c"], torch.device("cpu"), tmp_path, tiny_model_spec)
    before = count_macs(tiny_model, 32)
    model, result = apply_stage(create_stage("prune", {"target_macs": 0.6}), tiny_model, ctx)
    assert 1 <= len(pruned) <= 2 * 9  # the tiny model's few wide steps: 11 copies
    assert any(model is copy for copy in pruned)
    assert result["macs_after"] == count_macs(model, 32) <= 0.6 * before

"""The plan's timings: the budget a plan must reach, shares saved by sets of cuts (timed in
turn with the input and a copy of it), whole planned models against the reference; on a
clock that reads MACs, then once on the real measurer."""

from __future__ import annotations

import pytest
import torch
from conftest import MacsClock
from torch import nn

from compress.measure.macs import count_macs
from compress.ops.onnx_export import export_onnx
from compress.pipeline.measurer import Measurer
from compress.planning.timing import Budget, PlanTiming
from compress.recipe.schema import BenchSection

SIZE = 32


def _net(width: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(width, 3)).eval()


def test_the_budget_is_a_ratio_over_the_stages_input():
    assert Budget(3.0, None, input_ms=2.0).required == 3.0
    assert Budget(3.0, None, input_ms=2.0, input_speedup=1.5).required == 2.0
    assert Budget(None, 0.5, input_ms=2.0).required == 4.0
    assert Budget(None, 4.0, input_ms=2.0).required == 0.5  # already met


def _timing(tmp_path, model, clock, runs=10, reference=None):
    timing = PlanTiming(clock, SIZE, tmp_path,
                        export_onnx(model, tmp_path / "input.onnx", SIZE), 1, runs)
    if reference is not None:
        timing.reference_path = timing.export(reference)
    return timing


def test_shares_saved_are_timed_in_turn_with_the_input_and_a_copy(tmp_path):
    clock = MacsClock(SIZE)
    model, half, quarter = _net(32), _net(16), _net(8)
    timing = _timing(tmp_path, model, clock)
    (saved_half, saved_quarter), noise, disturbed = timing.shares_saved([half, quarter],
                                                                        runs_factor=3)
    assert disturbed is False
    macs = [count_macs(m, SIZE) for m in (model, half, quarter)]
    assert clock.turns == [[macs[0], macs[0], macs[1], macs[2]]]
    assert saved_half == pytest.approx(1 - macs[1] / macs[0])
    assert saved_quarter == pytest.approx(1 - macs[2] / macs[0]) and noise == 0.0
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == ["input.onnx"]  # cleaned up


def test_whole_models_are_timed_two_in_turn_against_the_reference(tmp_path):
    clock = MacsClock(SIZE)
    teacher, model, planned = _net(48), _net(32), _net(16)
    timing = _timing(tmp_path, model, clock, reference=teacher)
    macs = {name: count_macs(m, SIZE) for name, m in
            (("teacher", teacher), ("input", model), ("planned", planned))}
    alone = timing.input_alone()
    assert alone.speedup == pytest.approx(macs["teacher"] / macs["input"]) == \
        timing.input_speedup and alone.ratio == 1.0
    whole = timing.whole(planned)
    assert clock.turns == [[macs["teacher"], macs["input"]], [macs["teacher"], macs["planned"]]]
    assert whole.speedup == pytest.approx(macs["teacher"] / macs["planned"])
    assert whole.ratio == pytest.approx(macs["input"] / macs["planned"])
    assert whole.ms == pytest.approx(macs["planned"] / 1e6)
    # Without a reference the input is timed against a copy of itself.
    (tmp_path / "plain").mkdir()
    plain = _timing(tmp_path / "plain", model, MacsClock(SIZE))
    assert plain.input_alone().speedup == 1.0 and plain.input_speedup == 1.0


def test_a_cut_that_removes_most_of_the_work_saves_time_on_the_real_measurer(tmp_path):
    """The real timing process: an input of 64 channels against a copy of itself and the
    same network at 8 channels (about 50x fewer MACs). Only the order is checked: the
    narrow network saves a share of the time, and more than the copy does."""
    wide, narrow = _net(64), _net(8)
    assert count_macs(wide, SIZE) > 40 * count_macs(narrow, SIZE)
    measurer = Measurer(bench=BenchSection(), data=None, device=torch.device("cpu"),
                        input_size=SIZE)
    try:
        timing = PlanTiming(measurer, SIZE, tmp_path,
                            export_onnx(wide, tmp_path / "input.onnx", SIZE), 1, 20)
        (saved, copy_saved), noise, _ = timing.shares_saved([narrow, wide])
    finally:
        measurer.close()
    assert 0 < saved < 1 and saved > copy_saved, (saved, copy_saved, noise)

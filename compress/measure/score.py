"""The competition score (lower is better), both formulas, every constant configurable.

time:  time_weight * time / baseline_time + sigmoid(f1_slope * (baseline_f1 - f1))
macs:  macs / baseline_macs + f1_term, f1_term = sigmoid(...) as above, or f1_floor_term
       when f1 < f1_floor (the 9-class round fixed it at 1.0 below F1 0.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ScoreConstants:
    formula: str = "time"
    time_weight: float = 0.5
    f1_slope: float = 20.0
    f1_floor: float = 0.5
    f1_floor_term: float = 1.0


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def f1_term(f1: float, baseline_f1: float, constants: ScoreConstants) -> float:
    if constants.formula == "macs" and f1 < constants.f1_floor:
        return constants.f1_floor_term
    return _sigmoid(constants.f1_slope * (baseline_f1 - f1))


def competition_score(f1: float, baseline_f1: float, constants: ScoreConstants, *,
                      time_ratio: float | None = None, macs_ratio: float | None = None) -> float:
    """`time_ratio`: time / baseline_time (formula "time"), in whatever unit they were
    measured, or the input's latency over the model's speed-up where only that is measured
    (the two timed interleaved); `macs_ratio`: MACs / baseline MACs (formula "macs")."""
    if constants.formula == "time":
        return constants.time_weight * time_ratio + f1_term(f1, baseline_f1, constants)
    if constants.formula == "macs":
        return macs_ratio + f1_term(f1, baseline_f1, constants)
    raise ValueError(f"unknown score formula {constants.formula!r}")

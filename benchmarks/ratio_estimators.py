"""Which speed-up estimator is steadiest on this machine, and which reads like the judges:
the same ONNX files timed in several rounds, three in turn (the way a plan timed the
reference, its input and a planned model until the seventh session), two in turn in blocks
of 5 (the plan's whole-model timing since then) and two in turn in blocks of 10 (the way the
export stage and benchmarks/retime.py time a baseline and a final model), each round
reduced four ways: the median over cycles of block-median ratios, the ratio of the fastest
runs, the ratio of 10th percentiles and the ratio of overall medians (the judges' figure).

    python benchmarks/ratio_estimators.py BASELINE.onnx MIDDLE.onnx FINAL.onnx [--rounds 4]
    # e.g. a two-round latency run's files:
    python benchmarks/ratio_estimators.py runs/latency2r_v2/x5_s2/stages/00-input/model.onnx \
        runs/latency2r_v2/x5_s2/stages/03-drop/model.onnx \
        runs/latency2r_v2/x5_s2/stages/04-plan/model.onnx

Each line: BASELINE over FINAL timed directly in both turns, and MIDDLE's two steps.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from compress import UserError, blocks_in_turn, open_model, per_cycle_ratio


def estimates(first: list[list[float]], other: list[list[float]]) -> tuple[float, ...]:
    """(median over cycles of block-median ratios, ratio of minima, ratio of 10th
    percentiles, ratio of medians): how many times faster `other` ran than `first`."""
    all_first, all_other = np.concatenate(first), np.concatenate(other)
    return (per_cycle_ratio(first, other), float(all_first.min() / all_other.min()),
            float(np.percentile(all_first, 10) / np.percentile(all_other, 10)),
            float(np.median(all_first) / np.median(all_other)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline")
    parser.add_argument("middle", help="a model between the two (a plan's input)")
    parser.add_argument("final")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--runs", type=int, default=300, help="timed runs per model a round")
    args = parser.parse_args()
    try:
        models = [open_model(path) for path in (args.baseline, args.middle, args.final)]
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    runners, sizes = [m.runner for m in models], [m.input_size for m in models]

    def text(values: tuple[float, ...]) -> str:
        return " / ".join(f"{v:.2f}" for v in values)

    print("speed-ups as median of per-cycle ratios / ratio of fastest runs / ratio of p10 / "
          "ratio of medians")
    for round_index in range(args.rounds):
        three = blocks_in_turn(runners, sizes, 1, 10, args.runs, 5, rotate=True).kept()
        pair = [runners[0], runners[2]], [sizes[0], sizes[2]]
        by_five = blocks_in_turn(*pair, 1, 10, args.runs, 5, rotate=True).kept()
        by_ten = blocks_in_turn(*pair, 1, 10, args.runs, 10, rotate=True).kept()
        print(f"round {round_index + 1}: baseline {np.median(np.concatenate(three[0])):.3f} ms; "
              f"final over baseline: three in turn {text(estimates(three[0], three[2]))}, "
              f"two in turn by 5 {text(estimates(by_five[0], by_five[1]))}, "
              f"two in turn by 10 {text(estimates(by_ten[0], by_ten[1]))}; middle over baseline "
              f"{text(estimates(three[0], three[1]))}, final over middle "
              f"{text(estimates(three[1], three[2]))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Re-time finished models against one baseline in one sitting, several rounds.

A single interleaved comparison on a shared machine moves by +-15 % between sittings (see
benchmarks/RESULTS.md), so this repeats it: each round times every model interleaved with
the baseline (`compare_latency`, blocks of 10), rounds one after another, and prints each
model's speed-up per round and their median, as a ratio of medians and of fastest runs.
Use it to compare the final ONNX models of runs made at different times (for example a new
recipe against an earlier peer's run).

    python benchmarks/retime.py BASELINE.onnx NAME=MODEL.onnx [NAME=MODEL.onnx ...]
        [--runs 300] [--rounds 3] [--json OUT.json]

Reproduces: every "re-timed" speed-up in benchmarks/RESULTS.md and docs/results.md (for
example the searched architecture's 6.35x / 6.29x, 2026-12-01).
Run time on the 2-core VM: not timed (it grows with --runs, --rounds and the models).
Output: each model's speed-up per round and their median on stdout; --json writes them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import compress
from compress import UserError


def parse_models(items: list[str]) -> dict[str, str]:
    models = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"{item!r}: give NAME=MODEL.onnx")
        models[name] = path
    return models


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", help="the baseline's ONNX model")
    parser.add_argument("models", nargs="+", metavar="NAME=MODEL.onnx")
    parser.add_argument("--runs", type=int, default=300, help="timed runs per model per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", dest="json_out", help="also write the ratios here")
    args = parser.parse_args()
    try:
        if args.runs < 2 or args.rounds < 1:
            raise UserError("--runs must be at least 2 and --rounds at least 1")
        models = parse_models(args.models)
        comparisons = compress.retime(args.baseline, models, args.runs, args.rounds,
                                      echo=lambda line: print(line, file=sys.stderr, flush=True))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"speed-up over {args.baseline} (ONNX Runtime CPU, batch 1, {args.runs} interleaved "
          f"runs each, {args.rounds} rounds): ratio of medians, and of fastest runs (they "
          "can disagree on a shared machine)")
    speedups = {name: ([c.ratio for c in rounds], [c.min_ratio for c in rounds])
                for name, rounds in comparisons.items()}
    for name, (medians, fastest) in speedups.items():
        print(f"{name:<32} median {statistics.median(medians):.2f}x   rounds "
              + ", ".join(f"{v:.2f}x" for v in medians)
              + f"   fastest runs {statistics.median(fastest):.2f}x   rounds "
              + ", ".join(f"{v:.2f}x" for v in fastest))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(
            {"baseline": args.baseline, "runs": args.runs,
             "models": {name: {"path": models[name], "speedups": medians,
                               "speedups_fastest_runs": fastest}
                        for name, (medians, fastest) in speedups.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

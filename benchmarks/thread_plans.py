"""Does the plan follow the device? The same plan made at several thread counts, each
planned model then timed at every thread count (issue 18, item 7).

For each `--threads` value it runs the recipe's plan stage alone (then an export) with
`bench.threads` set to it, into OUT/t{threads} (a finished run is re-read); the latency
table is cached per device fingerprint, and the thread count is part of it, so each
setting times its own sets. Then every planned model is timed against the run's input
at every thread count, interleaved, `--rounds` times (median), and the cuts the plans
share and differ in are listed.

    python benchmarks/thread_plans.py --recipe recipes/mnv3_small_latency.yaml --threads 1,2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

import compress

REPO = Path(__file__).resolve().parents[1]


def plan_at(recipe: str, data: str, out: Path, threads: int) -> list[dict]:
    """The recipe's plan stage alone, then an export, at `threads`; the report's stages.
    Paths in the recipe are relative to the repository, where this runs it."""
    if not (out / "report.json").is_file():
        raw = yaml.safe_load(Path(recipe).read_text())
        raw["stages"] = [next(s for s in raw["stages"] if "plan" in s),
                         {"export": {"fp16": False}}]
        out.parent.mkdir(parents=True, exist_ok=True)
        plan_only = out.parent / f"{out.name}.yaml"
        plan_only.write_text(yaml.safe_dump(raw, sort_keys=False))
        subprocess.run([sys.executable, "-m", "compress", "run", str(plan_only), "--data", data,
                        "--out", str(out), "--set", f"bench.threads={threads}"],
                       check=True, cwd=REPO)
    return json.loads((out / "report.json").read_text())["stages"]


def cuts(stages: list[dict]) -> set[str]:
    plan = next(s for s in stages if s["name"] == "plan")
    return {f"{c['kind']} {c['target']} {c['amount']:g}" for c in plan["result"]["chosen"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "mnv3_small_latency.yaml"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "trashnet"))
    parser.add_argument("--out", default=str(REPO / "runs" / "thread_plans"))
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--runs", type=int, default=300, help="timed runs per comparison")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        print(f"skipped: no data at {args.data}")
        return 0
    settings = [int(t) for t in args.threads.split(",") if t.strip()]
    runs = {t: plan_at(args.recipe, args.data, Path(args.out) / f"t{t}", t) for t in settings}
    for made_at, stages in runs.items():
        plan = next(s for s in stages if s["name"] == "plan")
        print(f"plan made at {made_at} thread(s): {plan['note']}")
        for timed_at in settings:
            ratios = [compress.time_interleaved(stages[0]["onnx"], stages[-1]["onnx"],
                                                args.runs, threads=timed_at).ratio
                      for _ in range(args.rounds)]
            print(f"  timed at {timed_at} thread(s): {statistics.median(ratios):.2f}x faster "
                  f"than the input (rounds {', '.join(f'{r:.2f}' for r in ratios)}), "
                  f"{stages[-1]['macs'] / 1e6:.1f} M MACs")
    chosen = {t: cuts(stages) for t, stages in runs.items()}
    common = set.intersection(*chosen.values())
    print(f"cuts in every plan: {len(common)}")
    for t, these in chosen.items():
        print(f"only at {t} thread(s) ({len(these - common)}): "
              + ", ".join(sorted(these - common)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

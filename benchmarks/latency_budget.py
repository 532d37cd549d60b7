"""The latency-budget recipe (`recipes/mnv3_latency.yaml`) at several targets and seeds.

For each target speed-up and seed it runs the recipe into OUT/x{target}_s{seed} (a finished
run is kept and only re-read, an interrupted one resumes: the grid can be filled over
several invocations), re-times each final ONNX model interleaved with the input in one
sitting (median of `--rounds` rounds) at the recipe's `bench.threads` (the threads its plan
was timed at) and, where those are set, at the runtime's default threads too, and prints
one row per run plus the seed mean per target: measured speed-up against the target, val
and held-out macro F1 and their change, and the wall time. Each run's plan reports whether
its latency table was reused (a second run on the same device) or timed cold. A recipe
with a `teacher` (a small model trained from scratch, planned relative_to: teacher) is
measured against the teacher instead of its input: the teacher's own one-stage run
(OUT/reference) gives its ONNX file and F1 figures.

    python benchmarks/latency_budget.py --targets 5 --seeds 42
    python benchmarks/latency_budget.py --targets 3,4,5,6,8 --seeds 1,2,3 --out runs/latency
    python benchmarks/latency_budget.py --recipe recipes/mnv3_small_latency.yaml --seeds 42,1,2
    python benchmarks/latency_budget.py --recipe recipes/mnv3_small_latency.yaml --targets 4 \
        --set checkpoint=runs/mnv3_small_s1/last.safetensors --out runs/start_s1
    python benchmarks/latency_budget.py --recipe recipes/mnv3_small_latency.yaml \
        --targets 4,5,6,8 --seeds 42 --plot curve.png --peers runs/peers/peers.json

Reproduces: the latency budget's figures (docs/results.md, "Latency budget";
benchmarks/RESULTS.md, "Compress to a latency budget").
Run time on the 2-core VM: 12.6-18.8 min a run of the 5x recipes (2026-11-30 and
2026-12-01), so about 40-55 min for three seeds, plus the teacher's reference run and the
re-timing.
Output: one row per run and the seed mean per target on stdout; each run under
OUT/x{target}_s{seed}, the teacher's under OUT/reference; --plot writes a PNG.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

import compress

REPO = Path(__file__).resolve().parents[1]


def _numbers(text: str, kind=float) -> list:
    return [kind(part) for part in text.split(",") if part.strip()]


def run_one(recipe: str, data: str, out: Path, target: float, seed: int,
            overrides: list[str]) -> dict:
    """Run (or resume, or re-read) one recipe run; its report's first and last stage and
    the plan's record."""
    report = out / "report.json"
    minutes = None
    recipe_stages = yaml.safe_load(Path(recipe).read_text())["stages"]
    plan_index = [next(iter(stage)) for stage in recipe_stages].index("plan")  # gets the target
    if not report.is_file():
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "compress", "run", recipe, "--data", data,
                        "--out", str(out),
                        "--set", f"stages.{plan_index}.target_speedup={target}",
                        "--set", f"seed={seed}", *[a for o in overrides for a in ("--set", o)]],
                       check=True, cwd=REPO)
        minutes = (time.perf_counter() - started) / 60
    stages = json.loads(report.read_text())["stages"]
    plan = next(s for s in stages if s["name"] == "plan")
    return {"first": stages[0], "last": stages[-1], "plan": plan, "minutes": minutes}


def reference_input(recipe: str, data: str, out: Path) -> dict | None:
    """The teacher's measured record (ONNX file, val and held-out F1) when the recipe names
    one; None otherwise (each run is then compared with its own input)."""
    raw = yaml.safe_load(Path(recipe).read_text())
    if not raw.get("teacher"):
        return None
    reference = {k: v for k, v in raw.items() if k not in ("teacher", "stages")} | {
        "checkpoint": str(REPO / raw["teacher"]), "stages": [{"export": {"fp16": False}}]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "reference.yaml").write_text(yaml.safe_dump(reference, sort_keys=False))
    if not (out / "reference" / "report.json").is_file():
        compress.run(out / "reference.yaml", out / "reference", data=data)
    return json.loads((out / "reference" / "report.json").read_text())["stages"][0]


def timing_threads(recipe: str, overrides: list[str]) -> int | None:
    """The intra-op threads the recipe's runs time at: its bench.threads, overrides applied."""
    return compress.load_recipe(recipe, overrides).bench.threads


def retimed(first: str, last: str, runs: int, rounds: int, threads: int | None
            ) -> tuple[list[float], float]:
    """Each round's speed-up (median of per-cycle ratios) and the median ratio of fastest
    runs over the rounds."""
    comparisons = [compress.time_interleaved(first, last, runs=runs, threads=threads)
                   for _ in range(rounds)]
    return [c.ratio for c in comparisons], statistics.median(c.min_ratio for c in comparisons)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "mnv3_latency.yaml"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "trashnet"))
    parser.add_argument("--out", default=str(REPO / "runs" / "latency_budget"))
    parser.add_argument("--targets", default="5", help="comma-separated target speed-ups")
    parser.add_argument("--seeds", default="42", help="comma-separated seeds")
    parser.add_argument("--runs", type=int, default=300, help="timed runs per re-timing")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="passed to every compress run, e.g. "
                        "checkpoint=runs/mnv3_small_s1/last.safetensors (another start)")
    parser.add_argument("--plot", help="write val macro F1 against the re-timed speed-up here "
                        "(a PNG), with the reference and, with --peers, the peers")
    parser.add_argument("--peers", help="a peers.json of benchmarks/peers.py to plot beside "
                        "(its speed-ups come from its own sitting)")
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        print(f"skipped: no data at {args.data}")
        return 0
    threads = timing_threads(args.recipe, args.overrides)
    reference = reference_input(args.recipe, args.data, Path(args.out))
    print("speed-ups and F1 changes against " + (
        f"the recipe's teacher (measured in {Path(args.out) / 'reference'})" if reference
        else "each run's input"))
    rows: dict[float, list[dict]] = {}
    for target in _numbers(args.targets):
        for seed in _numbers(args.seeds, int):
            run = run_one(args.recipe, args.data, Path(args.out) / f"x{target:g}_s{seed}",
                          target, seed, args.overrides)
            first, last = reference or run["first"], run["last"]
            rounds, fastest = retimed(first["onnx"], last["onnx"], args.runs, args.rounds,
                                      threads)
            default_rounds, _ = (retimed(first["onnx"], last["onnx"], args.runs, args.rounds,
                                         None) if threads else (rounds, fastest))
            row = {"target": target, "seed": seed, "retimed": statistics.median(rounds),
                   "retimed_fastest_runs": fastest, "threads": threads,
                   "retimed_default_threads": statistics.median(default_rounds),
                   "first": first,
                   # the run's own timing; with a teacher, times the run's input's speed-up
                   # over it (the plan, first in such recipes, timed that)
                   "in_run": last["speedup_vs_input"] * (
                       run["plan"]["result"]["input_speedup"] if reference else 1.0),
                   "val": last["macro_f1"], "val_change": last["macro_f1"] - first["macro_f1"],
                   "held_out": last.get("held_out_macro_f1"),
                   "held_out_change": (last["held_out_macro_f1"] - first["held_out_macro_f1"]
                                       if last.get("held_out_macro_f1") is not None else None),
                   "macs": last["macs"], "params": last["params"],
                   "plan_minutes": run["plan"]["seconds"] / 60,
                   "table": run["plan"]["result"]["latency_table"],
                   "minutes": run["minutes"]}
            rows.setdefault(target, []).append(row)
            table = row["table"]
            print(f"x{target:g} seed {seed}: re-timed {row['retimed']:.2f}x (rounds "
                  f"{', '.join(f'{r:.2f}' for r in rounds)}; fastest runs "
                  f"{row['retimed_fastest_runs']:.2f}x; in-run {row['in_run']:.2f}x, "
                  f"{row['retimed'] / target:.0%} of the target"
                  + (f"; at {threads} thread(s), and {row['retimed_default_threads']:.2f}x at "
                     "the runtime's default threads (rounds "
                     + ", ".join(f"{r:.2f}" for r in default_rounds) + ")" if threads else "")
                  + f"), {row['macs'] / 1e6:.1f} M "
                  f"MACs, {row['params']:,} params, val macro F1 {row['val']:.4f} "
                  f"({100 * row['val_change']:+.2f} pt), held-out "
                  + (f"{row['held_out']:.4f} ({100 * row['held_out_change']:+.2f} pt)"
                     if row["held_out"] is not None else "n/a")
                  + f"; plan {row['plan_minutes']:.1f} min ("
                  + (f"table {table['measured']} timed, {table['reused']} reused"
                     if table else "nothing cut: the input met the target") + "), run "
                  + (f"{row['minutes']:.1f} min" if row["minutes"] is not None
                     else "earlier (re-read)"))
    for target, runs in rows.items():
        changes = [100 * r["val_change"] for r in runs]
        spread = f" (seeds {min(changes):+.2f} to {max(changes):+.2f})" if len(runs) > 1 else ""
        print(f"x{target:g}: mean re-timed {statistics.mean(r['retimed'] for r in runs):.2f}x, "
              f"mean val change {statistics.mean(changes):+.2f} pt{spread} over {len(runs)} "
              "seed(s)")
    if args.plot:
        plot(Path(args.plot), reference or next(iter(rows.values()))[0]["first"],
             [r for runs in rows.values() for r in runs],
             json.loads(Path(args.peers).read_text())["methods"] if args.peers else [])
        print(f"wrote {args.plot}")
    return 0


def plot(path: Path, reference: dict, rows: list[dict], peers: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # a benchmark's own figure: the library's plotting is internal
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5))
    axes.scatter([1.0], [reference["macro_f1"]], color="black", label="reference (1x)")
    axes.scatter([r["retimed"] for r in rows], [r["val"] for r in rows], color="tab:blue",
                 label="plan + fine-tune, one point per target and seed")
    for row in rows:
        axes.annotate(f"x{row['target']:g} s{row['seed']}", (row["retimed"], row["val"]),
                      textcoords="offset points", xytext=(4, 3), fontsize=7)
    for peer in peers:
        axes.scatter(peer["speedup"], peer["macro_f1"], color="tab:orange", marker="s")
        axes.annotate(peer["method"], (peer["speedup"], peer["macro_f1"]),
                      textcoords="offset points", xytext=(4, -9), fontsize=7)
    axes.set_xlabel("batch-1 speed-up over the reference (ONNX Runtime CPU, interleaved)")
    axes.set_ylabel("val macro F1")
    axes.set_title("latency budget: val macro F1 against measured speed-up"
                   + (" (squares: peers)" if peers else ""))
    axes.legend(fontsize=8, loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    raise SystemExit(main())

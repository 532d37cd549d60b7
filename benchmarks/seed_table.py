"""Several peers.py runs (one per seed) as one table: each method's val macro F1 per run, the
mean, and the mean of the paired differences against the default recipe.

    python benchmarks/seed_table.py runs/seeds/peers1 runs/seeds/peers2 ...

Each argument is a peers.py --out folder holding peers.json. Speed-ups are the mean of each
run's re-timing (meaningless when the runs shared a machine).

Reproduces: the seed tables of benchmarks/RESULTS.md, "The default recipe and its peers"
(history of 2026-11-23, measured against the 0.8262 baseline).
Run time on the 2-core VM: not timed (it reads peers.json files).
Output: one table on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

DEFAULT = "default recipe"


def load_runs(folders: list[str]) -> dict[str, dict]:
    runs = {}
    for folder in folders:
        path = Path(folder, "peers.json")
        if not path.is_file():
            print(f"error: no peers.json in {folder} (is its peers.py run finished?)",
                  file=sys.stderr)
            sys.exit(2)
        runs[folder] = json.loads(path.read_text())
    return runs


def seed_table(runs: dict[str, dict]) -> str:
    methods = [m["method"] for m in next(iter(runs.values()))["methods"]]
    f1 = {folder: {m["method"]: m["macro_f1"] for m in run["methods"]}
          for folder, run in runs.items()}
    speedup = {folder: {m["method"]: m["speedup"] for m in run["methods"]}
               for folder, run in runs.items()}
    names = [Path(folder).name for folder in runs]
    lines = ["| method | " + " | ".join(names) + " | mean F1 | mean minus default | "
             "mean speed-up |", "|---" * (len(names) + 4) + "|"]
    baseline = [run["baseline"]["macro_f1"] for run in runs.values()]
    lines.append("| baseline | " + " | ".join(f"{v:.4f}" for v in baseline) +
                 f" | {statistics.mean(baseline):.4f} | | 1.00x |")
    for method in methods:
        present = [folder for folder in runs if method in f1[folder]]
        cells = [f"{f1[folder][method]:.4f}" if method in f1[folder] else "-" for folder in runs]
        values = [f1[folder][method] for folder in present]
        paired = [f1[folder][method] - f1[folder][DEFAULT] for folder in present
                  if DEFAULT in f1[folder]]
        difference = "" if method == DEFAULT or not paired else \
            f"{100 * statistics.mean(paired):+.2f} points"
        mean_speedup = statistics.mean(speedup[folder][method] for folder in present)
        lines.append(f"| {method} | " + " | ".join(cells) +
                     f" | {statistics.mean(values):.4f} | {difference} | {mean_speedup:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="peers.py --out folders")
    print(seed_table(load_runs(parser.parse_args().folders)))


if __name__ == "__main__":
    main()

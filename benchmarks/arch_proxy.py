"""How well does an architecture search's proxy rank designs? Trains a few designs of a
finished `compress arch-search` longer, and with other proxies, one at a time, and prints
each proxy's Spearman rank correlation with the longer training's held-out macro F1 (the
search's objective; val is printed beside it, never used).

    python benchmarks/arch_proxy.py recipes/arch_mnv3.yaml --search runs/arch_mnv3 \\
        --designs 4 --long-epochs 40 --out runs/arch_proxy

Designs: `--trials 3,7,12` or, by default, `--designs N` finished trials spread evenly over
the search's proxy F1 ranks (distinct designs). The search's own proxy figure is taken from
its study (training is seeded: a rerun gives the same model); each `--proxy` is trained
anew. Every training has its own folder under --out and resumes there, so an interrupted
benchmark continues where it stopped. Writes OUT/arch_proxy.json and OUT/arch_proxy.md.

Reproduces: how well the architecture search's proxy ranks designs (benchmarks/RESULTS.md,
"Architecture search": not measured yet).
Run time on the 2-core VM: not timed (never run).
Output: OUT/arch_proxy.json, OUT/arch_proxy.md and the correlations on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_PROXIES = ["epochs=3", "epochs=12,train_share=0.5", "epochs=6,image_scale=0.75"]


def parse_proxy(text: str) -> dict:
    values = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key not in ("epochs", "train_share", "image_scale") or not value:
            sys.exit(f"error: --proxy {text!r}: expected epochs=N[,train_share=S][,image_scale=X]")
        values[key] = int(value) if key == "epochs" else float(value)
    return values


def pick_trials(trials: list, count: int) -> list:
    """`count` distinct designs spread evenly over the proxy F1 ranks."""
    distinct = {}
    for trial in sorted(trials, key=lambda t: t.values[0]):
        distinct.setdefault(trial.user_attrs["design_key"], trial)
    ranked = list(distinct.values())
    if len(ranked) <= count:
        return ranked
    return [ranked[round(i * (len(ranked) - 1) / (count - 1))] for i in range(count)]


def train(job, trial, folder: Path, proxy: dict | None = None, epochs: int | None = None
          ) -> dict:
    import compress

    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_suffix(".log"), "a") as log:
        result = compress.train_arch_design(
            job, trial, folder, proxy=proxy, epochs=epochs,
            echo=lambda line: (log.write(line + "\n"), log.flush()))
    last = result.history[-1]
    return {"held_out_macro_f1": last["held_out_macro_f1"], "val_macro_f1": last["val_macro_f1"],
            "epochs": len(result.history),
            "minutes": sum(row["seconds"] for row in result.history) / 60}


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("search_file")
    parser.add_argument("--search", required=True, help="the arch-search --out folder")
    parser.add_argument("--trials", default=None, help="trial numbers, comma-separated")
    parser.add_argument("--designs", type=int, default=4)
    parser.add_argument("--long-epochs", type=int, default=40)
    parser.add_argument("--proxy", action="append", default=None,
                        help=f"a proxy to train, e.g. epochs=12,train_share=0.5 (repeatable; "
                             f"default: {' '.join(DEFAULT_PROXIES)})")
    parser.add_argument("--data", default=None, help="overrides DATA_PATH")
    parser.add_argument("--out", default="runs/arch_proxy")
    args = parser.parse_args()

    import compress

    job, finished = compress.arch_search_trials(args.search_file, args.search, args.data)
    if args.trials:
        wanted = {int(n) for n in args.trials.split(",")}
        chosen = [t for t in finished if t.number in wanted]
    else:
        chosen = pick_trials(finished, args.designs)
    if len(chosen) < 3:
        sys.exit(f"error: {len(chosen)} finished designs chosen; a rank correlation needs 3")
    search_proxy = job.section.proxy
    proxies = {f"search proxy ({search_proxy.epochs} epochs, share {search_proxy.train_share}, "
               f"scale {search_proxy.image_scale})": None}
    for text in args.proxy or DEFAULT_PROXIES:
        proxies[text] = parse_proxy(text)
    out = Path(args.out)
    rows = []
    for trial in chosen:
        row = {"trial": trial.number, "speedup": trial.user_attrs["figures"]["speedup"],
               "proxies": {}}
        for name, proxy in proxies.items():
            if proxy is None:
                row["proxies"][name] = {"held_out_macro_f1": trial.values[0]}
                continue
            folder = out / "proxies" / name.replace("=", "").replace(",", "_") / \
                f"trial{trial.number:04d}"
            row["proxies"][name] = train(job, trial, folder, proxy=proxy)
            print(f"trial {trial.number}, {name}: {row['proxies'][name]}", flush=True)
        row["long"] = train(job, trial, out / "long" / f"trial{trial.number:04d}",
                            epochs=args.long_epochs)
        print(f"trial {trial.number}, {args.long_epochs} epochs: {row['long']}", flush=True)
        rows.append(row)
    long_f1 = [r["long"]["held_out_macro_f1"] for r in rows]
    correlations = {name: spearman([r["proxies"][name]["held_out_macro_f1"] for r in rows],
                                   long_f1) for name in proxies}
    val_correlations = {name: spearman([r["proxies"][name]["held_out_macro_f1"] for r in rows],
                                       [r["long"]["val_macro_f1"] for r in rows])
                        for name in proxies}
    lines = [f"{len(rows)} designs of {args.search}, each trained {args.long_epochs} epochs "
             "(seed of the data YAML) and with each proxy; Spearman rank correlation of the "
             "proxy's held-out macro F1 with the longer training's held-out (and val) macro F1:",
             "", "| proxy | Spearman vs held-out | vs val | proxy minutes (mean) |",
             "|---|---|---|---|"]
    for name in proxies:
        minutes = [r["proxies"][name].get("minutes") for r in rows]
        shown = "n/a (from the search)" if None in minutes else \
            f"{sum(minutes) / len(minutes):.1f}"
        lines.append(f"| {name} | {correlations[name]:+.2f} | {val_correlations[name]:+.2f} | "
                     f"{shown} |")
    lines += ["", "| trial | speed-up | " + " | ".join(proxies) +
              f" | {args.long_epochs} epochs held-out | val |",
              "|" + "---|" * (len(proxies) + 4)]
    for r in rows:
        lines.append(f"| {r['trial']} | {r['speedup']:.2f}x | " + " | ".join(
            f"{r['proxies'][name]['held_out_macro_f1']:.4f}" for name in proxies) +
            f" | {r['long']['held_out_macro_f1']:.4f} | {r['long']['val_macro_f1']:.4f} |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "arch_proxy.md").write_text("\n".join(lines) + "\n")
    (out / "arch_proxy.json").write_text(json.dumps(
        {"designs": rows, "spearman_held_out": correlations, "spearman_val": val_correlations,
         "long_epochs": args.long_epochs}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Recovery after the cuts: arms x seeds x epoch budgets of `compress finetune` on one fixed
planned architecture, paired by seed, judged on the held-out train images, reported on val.

    python benchmarks/recovery.py [--out benchmarks/recovery] [--arms today,fm_cos,fm_cos_ema]
        [--seeds 42,1,2] [--epochs 55,150] [--start PLANNED.safetensors | --plan-recipe R]
    python benchmarks/recovery.py --report   # the table, nothing run
    python benchmarks/recovery.py --report --plot curves.png [--arms today,kd_cos_ema_uncut]

The start (unless --start names one): the shipped
checkpoints/mnv3_small_latency_plan.safetensors, the plan stage of
recipes/mnv3_small_latency.yaml (the distilled small model planned to 5x of the baseline,
seed 42). A plan times its cuts, so planning again on another machine or in another
sitting cuts other channels: the start ships so that runs made anywhere stay paired.
`--plan-recipe R` plans a new start with R's stages up to its plan, once, into OUT/start
(`recipes/mnv3_latency.yaml`: the baseline itself, pruned, fine-tuned and planned to 5x).
Every run
fine-tunes that checkpoint with the shipped baseline as the teacher (the `*_uncut` arms:
with the model the plan cut, the plan recipe's checkpoint);
the checkpoint's recorded held-out split stays the same in every run, so runs of one seed
differ only by their arm. The peer arm (`peer_fm_cos_ema`) trains torchvision's
mobilenet_v3_small from scratch instead, and `searched_fm_cos_ema` the searched design
(recipes/models/mnv3_searched.yaml), with the same teacher and recovery options, for the
start's 120 epochs plus the arm's, held out of the same images. Each run writes
OUT/runs/<arm>-<epochs>ep-seed<seed>/ and its figures and per-epoch history to
OUT/results/<same>.json. The default OUT, benchmarks/recovery, keeps its results/ in the
repository (runs/, logs/ and start/ are ignored by git): commit them, and a later
invocation skips the runs whose file exists (kill it at any time: the run in progress
continues from its last epoch). A result file is named by arm, epochs and seed only: use
a new OUT for another start or other options. Run one at a time, nothing heavy beside it.

Per arm and budget: the kept (last) epoch's held-out and val macro F1, mean and sd over
seeds, the spread (max - min) of val macro F1 over the last ten epochs, and each arm's
paired difference to `today` on each split over the seeds they share, with a 95 %
bootstrap interval, and the val macro F1 of the epoch `--keep best` would have kept (the
best on held-out; its held-out figure chose it, so it is not reported). Figures are derived
again from each run's history whenever the table is printed; a result file records the
digest of its start, and a run measured from another start in the same OUT is refused.
Decisions read the held-out column; val is reported only.

Claim: which recovery recipe brings a planned model closest to its teacher (figures in
benchmarks/RESULTS.md, "Recovery after the cuts"). Run time on a 2-core AMD EPYC VM with
AVX2 only: 14-18 min per 55-epoch run of the shipped start (15-17 s an epoch, the teacher's
forward included; with AVX-512 about 9 s an epoch), a peer run of 175 epochs 83 min (28 s
an epoch). Output: one line per run, then the table above.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import compress

REPO = Path(__file__).resolve().parents[1]
TRASHNET = REPO.parent / "shared" / "data" / "trashnet"
BASELINE = REPO / "checkpoints" / "mnv3_trashnet.safetensors"
PLAN_RECIPE = REPO / "recipes" / "mnv3_small_latency.yaml"
START = REPO / "checkpoints" / "mnv3_small_latency_plan.safetensors"  # PLAN_RECIPE's plan

# Each arm: `compress finetune` options besides the checkpoint, data, teacher, epochs, seed.
# `today` is the fine-tune recipes/mnv3_small_latency.yaml had before it took
# `kd_cos_ema_uncut` (2026-12-07): the control every arm is paired with.
ARMS: dict[str, list[str]] = {
    "today": ["--lr", "0.005", "--schedule", "onecycle", "--weight-decay", "0.0001"],
    # Function matching (Beyer et al. 2022): the teacher's outputs only, on mixed images,
    # cosine from a rewound peak rate after a short warmup (Renda et al. 2020).
    "fm_cos": ["--distill-mode", "function_matching", "--mixup", "0.4", "--lr", "0.02",
               "--schedule", "cosine", "--warmup-epochs", "3", "--weight-decay", "0.0001"],
    "fm_cos_ema": ["--distill-mode", "function_matching", "--mixup", "0.4", "--lr", "0.02",
                   "--schedule", "cosine", "--warmup-epochs", "3", "--weight-decay",
                   "0.0001", "--ema", "0.998"],
    # The same schedule, mixing and average with today's loss (half the labels, half the
    # teacher's soft targets at temperature 4): which of the two moves val.
    "kd_cos_ema": ["--mixup", "0.4", "--lr", "0.02", "--schedule", "cosine", "--warmup-epochs",
                   "3", "--weight-decay", "0.0001", "--ema", "0.998"],
    # Which of kd_cos_ema's two differences from today costs val: its rate without the
    # mixing, and today's rate with the mixing (both with the average).
    "kd_cos_ema_nomix": ["--lr", "0.02", "--schedule", "cosine", "--warmup-epochs", "3",
                         "--weight-decay", "0.0001", "--ema", "0.998"],
    "today_mix_ema": ["--lr", "0.005", "--schedule", "onecycle", "--weight-decay", "0.0001",
                      "--mixup", "0.4", "--ema", "0.998"],
    # The same architecture from fresh weights (Liu et al. 2019), the same teacher and recipe.
    "fm_cos_ema_reinit": ["--distill-mode", "function_matching", "--mixup", "0.4", "--lr",
                          "0.02", "--schedule", "cosine", "--warmup-epochs", "3",
                          "--weight-decay", "0.0001", "--ema", "0.998", "--reinit"],
}
# Models trained from scratch (`compress train`) with the same teacher and recovery options,
# for as many epochs as the compressed model had in all (its start's training,
# PEER_START_EPOCHS, plus the recovery's), held out of the same images (CALIBRATION_SEED 42)
# whatever their training seed; the learning rate is PEER_LR. Each: its options (the model
# among them) and its data YAML. The fair peer is torchvision's mobilenet_v3_small; the
# searched design (recipes/models/mnv3_searched.yaml, 112 px) is the third start.
FM_COS_EMA_TRAIN = ["--distill-mode", "function_matching", "--mixup", "0.4", "--schedule",
                    "cosine", "--warmup-epochs", "3", "--ema", "0.998"]
PEER_DATA = REPO / "recipes" / "data" / "trashnet_calibration.yaml"
PEER_ARMS: dict[str, tuple[list[str], Path]] = {
    "peer_fm_cos_ema": (["--model", "mobilenet_v3_small", *FM_COS_EMA_TRAIN], PEER_DATA),
    "searched_fm_cos_ema": (["--model", str(REPO / "recipes" / "models" / "mnv3_searched.yaml"),
                             *FM_COS_EMA_TRAIN],
                            REPO / "recipes" / "data" / "trashnet_mnv3_searched.yaml"),
}
# kd_cos_ema and fm_cos_ema with the model the plan cut as the teacher (the plan recipe's
# checkpoint, or --uncut) instead of the baseline: the distilled small start scores
# held-out 0.8274 before its cuts, the baseline 0.7998.
UNCUT_TEACHER_ARMS = {f"{arm}_uncut": ARMS[arm] for arm in ("kd_cos_ema", "fm_cos_ema")}
ARMS |= UNCUT_TEACHER_ARMS
DEFAULT_ARMS = "today,fm_cos,fm_cos_ema"
PEER_LR = 0.02  # the recovery arms' peak rate
PEER_START_EPOCHS = 120  # recipes/mnv3_small_latency.yaml's checkpoint was trained 120 epochs


def planned_start(out: Path, data: Path, plan_recipe: Path = PLAN_RECIPE) -> Path:
    """The plan stage's model of `plan_recipe` (its stages up to and including the first
    plan, at the recipe's seed), run once into OUT/start."""
    import yaml

    found = sorted((out / "start" / "stages").glob("*-plan/model.safetensors"))
    if found:
        return found[0]
    recipe = yaml.safe_load(plan_recipe.read_text())
    kinds = [next(iter(stage)) for stage in recipe["stages"]]
    if "plan" not in kinds:
        raise SystemExit(f"{plan_recipe}: no plan stage to start from")
    recipe["stages"] = recipe["stages"][:kinds.index("plan") + 1]
    for key in ("checkpoint", "teacher"):  # relative to the repository, read from OUT
        if key in recipe and not Path(recipe[key]).is_absolute():
            recipe[key] = str(REPO / recipe[key])
    path = out / "plan_only.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    subprocess.run([sys.executable, "-m", "compress", "run", str(path), "--data", str(data),
                    "--out", str(out / "start")], check=True)
    return planned_start(out, data, plan_recipe)


def uncut_checkpoint(plan_recipe: Path) -> Path:
    """The checkpoint `plan_recipe` plans: the start's model before its cuts."""
    import yaml

    checkpoint = Path(yaml.safe_load(plan_recipe.read_text())["checkpoint"])
    return checkpoint if checkpoint.is_absolute() else REPO / checkpoint


def peer_data_yaml(out: Path, arm: str, data: Path, data_yaml: Path,
                   held_out: dict) -> Path:
    """`data_yaml` with DATA_PATH at `data`, the recovery arms' peak rate and the start's
    held-out split (`held_out`: its recorded ratio and seed) for every training seed, as
    OUT/<arm>_data.yaml."""
    import yaml

    keys = yaml.safe_load(data_yaml.read_text()) | {
        "DATA_PATH": str(data), "INIT_LR": PEER_LR, "CALIBRATION_RATIO": held_out["ratio"],
        "CALIBRATION_SEED": held_out["seed"]}
    path = out / f"{arm}_data.yaml"
    path.write_text(yaml.safe_dump(keys, sort_keys=False))
    return path


def run_name(arm: str, epochs: int, seed: int) -> str:
    return f"{arm}-{epochs}ep-seed{seed}"


@dataclass(frozen=True)
class Peer:
    """How the arms trained from scratch train: their data YAML unless `data_yaml` replaces
    it (its DATA_PATH replaced in any case), and the epochs the compressed model's start
    had."""

    data_yaml: Path | None = None
    start_epochs: int = PEER_START_EPOCHS


def file_sha256(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def figures(history: list[dict]) -> dict:
    """A run's figures from its per-epoch history: the kept (last) epoch's held-out and val
    macro F1, the spread of val over the last ten epochs, the wall time, and the epoch
    `--keep best` would keep (the first with the best held-out macro F1) with its val macro
    F1; that epoch's held-out F1 chose it, so only its val F1 is a fair figure."""
    last_ten = [row["val_macro_f1"] for row in history[-10:]]
    judged = [row for row in history if row.get("held_out_macro_f1") is not None]
    best = max(judged, key=lambda row: row["held_out_macro_f1"]) if judged else {}
    return {"held_out_macro_f1": history[-1].get("held_out_macro_f1"),
            "val_macro_f1": history[-1]["val_macro_f1"],
            "val_spread_last_ten": max(last_ten) - min(last_ten),
            "seconds": sum(row["seconds"] for row in history),
            "best_held_out_epoch": best.get("epoch"),
            "val_macro_f1_at_best_held_out": best.get("val_macro_f1")}


def read_result(out: Path, result_path: Path, start_sha256: str | None = None) -> dict:
    """A finished run's result file, its history taken from the run folder where that is
    there and its figures derived again from the history (so that figures added later reach
    runs finished before). Refuses a result measured from another start than the one whose
    digest is `start_sha256`."""
    result = json.loads(result_path.read_text())
    recorded = result.get("start_sha256")
    if start_sha256 and recorded and recorded != start_sha256:
        raise SystemExit(f"{result_path} was measured from another start (sha256 "
                         f"{recorded[:12]}, not {start_sha256[:12]}); use a new --out")
    history_path = out / "runs" / result_path.stem / "train" / "history.json"
    history = (json.loads(history_path.read_text()) if history_path.is_file()
               else result.get("history"))
    if history:
        refreshed = result | figures(history) | {"history": history}
        if refreshed != result:
            result_path.write_text(json.dumps(refreshed, indent=1))
        result = refreshed
    return result


def one_run(out: Path, start: Path, data: Path, teacher: Path, arm: str, epochs: int,
            seed: int, peer: Peer = Peer()) -> dict:
    """The run's figures, from its result file, or trained now."""
    name = run_name(arm, epochs, seed)
    result_path = out / "results" / f"{name}.json"
    start_sha256 = file_sha256(start)
    if result_path.exists():
        return read_result(out, result_path, start_sha256)
    run_dir = out / "runs" / name
    log = out / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if arm in PEER_ARMS:
        options, data_yaml = PEER_ARMS[arm]
        data_yaml = peer_data_yaml(out, arm, data, peer.data_yaml or data_yaml,
                                   compress.load_checkpoint(start).held_out_split)
        command = [sys.executable, "-m", "compress", "train", "--data", str(data_yaml),
                   "--teacher", str(teacher), "--epochs", str(peer.start_epochs + epochs),
                   "--seed", str(seed), "--out", str(run_dir / "train"), *options]
    else:
        command = [sys.executable, "-m", "compress", "finetune", str(start), "--data",
                   str(data), "--teacher", str(teacher), "--epochs", str(epochs), "--seed",
                   str(seed), "--out", str(run_dir), *ARMS[arm]]
    print(f"{name}: {' '.join(command[3:])}", flush=True)
    with open(log, "w") as stream:
        subprocess.run(command, check=True, stdout=stream, stderr=subprocess.STDOUT)
    trained = run_dir / "train" / "last.safetensors"
    if arm in PEER_ARMS and compress.load_checkpoint(trained).held_out_files != \
            compress.load_checkpoint(start).held_out_files:
        raise SystemExit(f"{name}: held out of other images than the start; not comparable")
    history = json.loads((run_dir / "train" / "history.json").read_text())
    result = {"arm": arm, "epochs": epochs, "seed": seed, **figures(history),
              "teacher": str(teacher), "start": str(start), "start_sha256": start_sha256,
              "options": PEER_ARMS[arm][0] if arm in PEER_ARMS else ARMS[arm],
              "history": history}
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=1))
    print(f"  held-out {result['held_out_macro_f1']:.4f}  val {result['val_macro_f1']:.4f}  "
          f"last-ten spread {result['val_spread_last_ten']:.4f}  {result['seconds']:.0f} s",
          flush=True)
    return result


def bootstrap_interval(differences: list[float], draws: int = 10_000,
                       seed: int = 0) -> tuple[float, float]:
    """95 % interval of the mean of paired differences, resampling the seeds."""
    values = np.asarray(differences)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (draws, len(values)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def table(results: list[dict]) -> list[str]:
    """One line per arm and budget: means, sd, last-ten spread, paired difference to today,
    and the val macro F1 of the epochs `--keep best` would have kept."""
    by_key: dict[tuple[str, int], dict[int, dict]] = {}
    for row in results:
        by_key.setdefault((row["arm"], row["epochs"]), {})[row["seed"]] = row
    lines = ["| arm | epochs | seeds | held-out F1 mean (sd) | val F1 mean (sd) | last-ten val "
             "spread | held-out vs today (95 % CI) | val vs today (95 % CI) | kept by "
             "held-out: val F1 mean (epochs) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (arm, epochs), runs in sorted(by_key.items(), key=lambda item: (item[0][1], item[0][0])):
        held = [r["held_out_macro_f1"] for r in runs.values()]
        val = [r["val_macro_f1"] for r in runs.values()]
        spread = np.mean([r["val_spread_last_ten"] for r in runs.values()])
        today = by_key.get(("today", epochs), {})
        shared = sorted(set(runs) & set(today))
        paired = {"held_out_macro_f1": "n/a", "val_macro_f1": "n/a"}
        if arm != "today" and shared:
            for split in paired:
                differences = [runs[s][split] - today[s][split] for s in shared]
                low, high = bootstrap_interval(differences)
                paired[split] = (f"{np.mean(differences):+.4f} ({low:+.4f} to {high:+.4f}, "
                                 f"{len(shared)})")
        kept = [(r.get("val_macro_f1_at_best_held_out"), r.get("best_held_out_epoch"))
                for r in runs.values()]
        kept_by_held_out = "n/a" if any(f1 is None for f1, _ in kept) else (
            f"{np.mean([f1 for f1, _ in kept]):.4f} ({', '.join(str(e) for _, e in kept)})")
        sd = (lambda v: f"{np.std(v, ddof=1):.4f}" if len(v) > 1 else "-")
        lines.append(f"| {arm} | {epochs} | {len(runs)} | {np.mean(held):.4f} ({sd(held)}) | "
                     f"{np.mean(val):.4f} ({sd(val)}) | {spread:.4f} | "
                     f"{paired['held_out_macro_f1']} | {paired['val_macro_f1']} | "
                     f"{kept_by_held_out} |")
    return lines


def plot_curves(results: list[dict], path: Path) -> Path:
    """Val and held-out macro F1 of every finished run against its epochs and against its
    wall time: one colour per arm and budget, one line per seed, from the runs' histories
    (runs whose result file has none are left out)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 8))
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 2, sharey="row")
    colours = {}
    for row in sorted(results, key=lambda r: (r["arm"], r["epochs"], r["seed"])):
        key = f"{row['arm']} {row['epochs']} ep"
        colour = colours.setdefault(key, f"C{len(colours) % 10}")
        history = row["history"]
        epochs = [h["epoch"] for h in history]
        minutes = np.cumsum([h["seconds"] for h in history]) / 60
        label = key if row["seed"] == min(r["seed"] for r in results
                                           if (r["arm"], r["epochs"]) ==
                                           (row["arm"], row["epochs"])) else None
        for axis_row, split in enumerate(("val_macro_f1", "held_out_macro_f1")):
            values = [h.get(split) for h in history]
            axes[axis_row][0].plot(epochs, values, color=colour, lw=0.8, label=label)
            axes[axis_row][1].plot(minutes, values, color=colour, lw=0.8)
    for axis_row, split in enumerate(("val", "held-out")):
        axes[axis_row][0].set_ylabel(f"{split} macro F1")
        for axis in axes[axis_row]:
            axis.grid(alpha=0.3)
    axes[1][0].set_xlabel("epoch")
    axes[1][1].set_xlabel("wall time, min (this machine)")
    axes[0][0].legend(fontsize=8)
    figure.suptitle("Recovery after the cuts: each run's macro F1 (one line per seed)")
    figure.tight_layout()
    figure.savefig(path, dpi=110, format="png")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "recovery",
                        help="where runs and results go [default: benchmarks/recovery, whose "
                        "results/ is kept in the repository]")
    parser.add_argument("--arms", default=None,
                        help="comma-separated arms to run, and the only ones --plot draws "
                        "[default: today,fm_cos,fm_cos_ema; --plot: every arm]")
    parser.add_argument("--seeds", default="42,1,2")
    parser.add_argument("--epochs", default="55")
    parser.add_argument("--start", type=Path, default=None,
                        help="the planned checkpoint [default: "
                        "checkpoints/mnv3_small_latency_plan.safetensors]")
    parser.add_argument("--plan-recipe", type=Path, default=None,
                        help="instead of --start: plan a new start once into OUT/start with "
                        "this recipe's stages up to its plan, e.g. recipes/mnv3_latency.yaml "
                        "for the baseline planned to 5x")
    parser.add_argument("--data", type=Path, default=TRASHNET)
    parser.add_argument("--teacher", type=Path, default=BASELINE)
    parser.add_argument("--uncut", type=Path, default=None,
                        help="the teacher of the *_uncut arms [default: the plan recipe's "
                        "checkpoint, the model the start was cut from]")
    parser.add_argument("--peer-data", type=Path, default=None,
                        help="one data YAML for every arm trained from scratch [default: "
                        "each arm's own]")
    parser.add_argument("--peer-start-epochs", type=int, default=PEER_START_EPOCHS,
                        help="epochs the compressed model's start was trained, added to the "
                        "peer's budget")
    parser.add_argument("--report", action="store_true", help="print the table only")
    parser.add_argument("--plot", type=Path, default=None,
                        help="also draw every finished run's F1 against epochs and wall time "
                        "into this PNG")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    arms = (args.arms or DEFAULT_ARMS).split(",")
    known = [*ARMS, *PEER_ARMS]
    unknown = [arm for arm in arms if arm not in known]
    if unknown:
        raise SystemExit(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if not args.report:
        if not args.data.is_dir():
            raise SystemExit(f"needs the data at {args.data}")
        if args.start and args.plan_recipe:
            raise SystemExit("--start and --plan-recipe each name a start; give one")
        start = (planned_start(out, args.data, args.plan_recipe.resolve()) if args.plan_recipe
                 else args.start or START)
        uncut = args.uncut or uncut_checkpoint((args.plan_recipe or PLAN_RECIPE).resolve())
        for epochs in (int(e) for e in args.epochs.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):  # seeds outer: pairs first
                for arm in arms:
                    teacher = uncut if arm in UNCUT_TEACHER_ARMS else args.teacher
                    one_run(out, start, args.data, teacher, arm, epochs, seed,
                            Peer(args.peer_data, args.peer_start_epochs))
    results = [read_result(out, path) for path in sorted((out / "results").glob("*.json"))]
    print("\n".join(table(results)))
    if args.plot:
        drawn = [row for row in results
                 if row.get("history") and (args.arms is None or row["arm"] in arms)]
        print(f"plot: {plot_curves(drawn, args.plot)} ({len(drawn)} runs)")


if __name__ == "__main__":
    main()

"""The default recipe against what a user would do instead, on the same model and data.

Every method starts from the shipped baseline, gets the same fine-tuning budget (the same
epochs over the same training images, with the same optimiser settings), and is measured
by the same pipeline; then every final ONNX file is timed again, interleaved with the
baseline, in one sitting (--rounds times; the median counts). Prints one table and writes
peers.json and peers.png (macro F1 against batch-1 speed-up).

Methods:
1. unstructured L1 magnitude pruning at 30 % (torch.nn.utils.prune), then fine-tuning with
   the pruned weights held at zero;
2. torch-pruning alone: uniform L2 channel pruning to the default recipe's MACs, fine-tuning;
3. Tucker alone (Kim et al. 2016): VBMF ranks on every k x k conv with groups 1, fine-tuning;
4. ONNX Runtime INT8 static quantization alone, as its documentation does it (MinMax ranges,
   default pre-processing), no fine-tuning;
5. the default recipe, recipes/mnv3_tucker.yaml;
6. with --from-scratch CHECKPOINT (repeatable): a model designed small and trained from
   scratch with the baseline's own recipe, the peer a user would pick instead of
   compressing, e.g. `compress train --model mobilenet_v3_small --data
   recipes/data/trashnet_calibration.yaml --out runs/mnv3_small` (120 epochs, last epoch;
   shipped as checkpoints/mnv3_small_trashnet.safetensors):
   measured as trained, and after the same fine-tuning epochs as the others (no teacher).

    python benchmarks/peers.py [--data ROOT] [--out runs/peers] [--epochs 28] [--rounds 3]
        [--set seed=1] [--only METHOD] [--reuse METHOD=EARLIER_OUT/method_folder] [--quick]
        [--from-scratch checkpoints/mnv3_small_trashnet.safetensors]

--reuse lets a changed default recipe be compared with peers that already ran (same
checkpoint, seed and epochs) instead of training them again.

--quick (used by the test suite) runs every method with one epoch on whatever data and
checkpoint are given, so the script cannot rot; its figures mean nothing.

Reproduces: the default recipe against its peers at an equal fine-tuning budget
(benchmarks/RESULTS.md, "The default recipe and its peers", history of 2026-11-23; measured
against the 0.8262 baseline, not yet against the shipped one).
Run time on the 2-core VM: about 1-2 hours (the stages of the recorded runs summed to 56-107
min, 2026-11-23), plus the re-timing; --quick runs in the test suite's smoke test.
Output: a table on stdout, OUT/peers.json and OUT/peers.png; each method's run under OUT.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import yaml
from torch import nn
from torch.nn.utils import prune as torch_prune

import compress

REPO = Path(__file__).resolve().parents[1]
DISTILL = {"temperature": 4.0, "alpha": 0.5}


class UnstructuredConfig(compress.StageConfig):
    amount: float = 0.3


@dataclass(frozen=True)
class UnstructuredResult(compress.StageResult):
    zero_weights: float = 0.0  # fraction of conv and linear weights held at zero


@compress.register_stage  # a user's own stage, registered as the README shows
class UnstructuredL1(compress.Stage):
    """Zeroes the smallest |w| of every conv and linear layer and keeps them at zero while
    fine-tuning (their gradients are masked): the competition teams' first attempt."""

    name = "unstructured_l1"
    Config = UnstructuredConfig

    def apply(self, model: nn.Module, ctx: compress.StageContext) -> compress.StageOutput:
        zeros = total = 0
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                torch_prune.l1_unstructured(module, "weight", amount=self.config.amount)
                torch_prune.remove(module, "weight")
                mask = (module.weight != 0).float()
                module.weight.register_hook(lambda grad, mask=mask: grad * mask.to(grad.device))
                zeros += int((mask == 0).sum())
                total += mask.numel()
        return compress.StageOutput(model, UnstructuredResult(zero_weights=zeros / total))


def method_recipes(default_recipe: dict, epochs: int, default_macs_kept: float | None
                   ) -> dict[str, dict]:
    """Each peer as a recipe over the same checkpoint, data and bench settings."""
    finetune = {"finetune": {"epochs": epochs, "lr": 0.02, "weight_decay": 0.0001,
                             "distill": DISTILL}}
    common = {k: v for k, v in default_recipe.items() if k != "stages"}
    target = default_macs_kept or 0.25
    return {
        "unstructured L1 30 %": common | {"stages": [{"unstructured_l1": {"amount": 0.3}},
                                                     finetune]},
        "torch-pruning uniform L2": common | {"stages": [
            {"prune": {"importance": "l2", "target_macs": target, "round_to": 8}}, finetune]},
        "Tucker alone (VBMF)": common | {"stages": [
            {"decompose": {"ranks": "vbmf", "min_macs_reduction": 0.0, "min_layer_macs": 0,
                           "pointwise": False, "linear": False}}, finetune]},
        "ORT INT8 static alone": common | {"stages": [
            {"quantize": {"ranges": "minmax", "optimize_before": True, "keep": "int8",
                          "min_agreement": 0.0}}]},
    }


def scratch_recipes(default_recipe: dict, epochs: int, checkpoints: list[str]
                    ) -> dict[str, dict]:
    """Each from-scratch checkpoint as it was trained, and after `epochs` more of plain
    fine-tuning (there is no larger teacher to distil from)."""
    common = {k: v for k, v in default_recipe.items() if k not in ("stages", "checkpoint")}
    recipes = {}
    for checkpoint in checkpoints:
        try:
            spec = compress.load_checkpoint(checkpoint).model_spec
        except compress.UserError as exc:  # missing or foreign: say so before anything runs
            fail(f"--from-scratch {checkpoint}: {exc}")
        name = spec.get("name") or Path(checkpoint).parent.name
        common_here = common | {"checkpoint": str(Path(checkpoint).resolve())}
        recipes[f"{name} from scratch"] = common_here | {"stages": [
            {"export": {"fp16": False}}]}
        recipes[f"{name} from scratch + {epochs} epochs"] = common_here | {"stages": [
            {"finetune": {"epochs": epochs, "lr": 0.02, "weight_decay": 0.0001}},
            {"export": {"fp16": False}}]}
    return recipes


def run_method(name: str, recipe: dict, out: Path, data: str) -> dict:
    path = out / f"{_slug(name)}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    records = compress.run(path, out / _slug(name), data=data, resume=True,
                           echo=lambda line: print(f"  [{name}] {line}", flush=True))
    return method_result(name, records)


def check_reuse(name: str, recipe: dict, folder: Path) -> None:
    """An earlier run of this method may stand in for it when it used the same checkpoint,
    seed and fine-tuning epochs (its pruning target may differ slightly, when the default
    recipe's MACs moved; the table shows each method's MACs)."""
    if not compress.read_run(folder) or not (folder / "recipe.yaml").is_file():
        fail(f"--reuse {name}={folder}: no finished run there")
    earlier = yaml.safe_load((folder / "recipe.yaml").read_text())
    this, that = compress.Recipe(**recipe), compress.Recipe(**earlier)  # defaults filled in
    for key, wanted, found in (
            ("checkpoint", this.checkpoint, that.checkpoint), ("seed", this.seed, that.seed),
            ("fine-tuning epochs", finetune_epochs(recipe), finetune_epochs(earlier))):
        if found != wanted:
            fail(f"--reuse {name}={folder}: its {key} is {found}, this run's is {wanted}")


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def finetune_epochs(recipe: dict) -> int:
    return sum(next(iter(s.values())).get("epochs", 0)
               for s in recipe["stages"] if "finetune" in s)


def method_result(name: str, records: list) -> dict:
    final = records[-1]
    return {"method": name, "params": final.params, "macs": final.macs,
            "macro_f1": final.macro_f1, "accuracy": final.accuracy, "score": final.score,
            "onnx": final.onnx, "input_onnx": records[0].onnx,
            "baseline_f1": records[0].macro_f1, "baseline_macs": records[0].macs,
            # the stages' own time (compression, fine-tuning, export), measurement excluded;
            # from the records, so a resumed method reports its first run's time
            "minutes": sum(r.seconds for r in records[1:]) / 60}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "mnv3_tucker.yaml"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "trashnet"))
    parser.add_argument("--out", default=str(REPO / "runs" / "peers"))
    parser.add_argument("--epochs", type=int, default=None,
                        help="fine-tuning epochs per peer [default: the recipe's total]")
    parser.add_argument("--runs", type=int, default=300, help="timed runs per model per round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timing rounds; the table gives each model's median speed-up")
    parser.add_argument("--quick", action="store_true",
                        help="one epoch everywhere (for the test suite)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="a recipe value for every method, e.g. "
                        "seed=1 or data.num_workers=8 (repeatable)")
    parser.add_argument("--only", action="append", default=[], metavar="METHOD",
                        help="run only these peers besides the default recipe (repeatable)")
    parser.add_argument("--skip-finetune", action="append", default=[], metavar="METHOD",
                        help="run METHOD without its fine-tune (marked in the table); "
                             "repeatable. Finished methods in --out are resumed, not rerun.")
    parser.add_argument("--from-scratch", action="append", default=[], metavar="CHECKPOINT",
                        help="a small model trained from scratch (compress train): measured "
                             "as trained and after the peers' fine-tuning epochs "
                             "(repeatable)")
    parser.add_argument("--reuse", action="append", default=[], metavar="METHOD=FOLDER",
                        help="take METHOD's finished run folder from an earlier --out instead "
                             "of running it, when checkpoint, seed and epochs match "
                             "(repeatable; for a changed default recipe)")
    return parser.parse_args()


def default_recipe(args: argparse.Namespace) -> dict:
    """The default recipe as a mapping: its checkpoint made absolute, --set applied, and
    with --quick one epoch per fine-tune."""
    default = yaml.safe_load(Path(args.recipe).read_text())
    default["checkpoint"] = str((Path(args.recipe).parent.parent / default["checkpoint"])
                                if not Path(default["checkpoint"]).is_absolute() else
                                default["checkpoint"])
    for assignment in args.overrides:
        compress.apply_override(default, assignment)
    if args.quick:
        for stage in default["stages"]:
            options = next(iter(stage.values()))
            if "epochs" in options:
                options["epochs"] = 1
    return default


def reused_folders(items: list[str]) -> dict[str, Path]:
    reuse: dict[str, Path] = {}
    for item in items:
        name, _, folder = item.partition("=")
        if not name or not folder or name in reuse:
            fail(f"--reuse {item!r}: give METHOD=FOLDER, once per method")
        reuse[name] = Path(folder)
    return reuse


def planned(args: argparse.Namespace, default: dict, epochs: int,
            default_macs_kept: float | None) -> dict[str, tuple[str, dict]]:
    """The peers this run compares, by name: (label in the table, recipe)."""
    methods = {}
    recipes = method_recipes(default, epochs, default_macs_kept) | \
        scratch_recipes(default, epochs, args.from_scratch)
    for name, recipe in recipes.items():
        if args.only and name not in args.only:
            continue
        if name in args.skip_finetune:
            recipe["stages"] = [s for s in recipe["stages"] if "finetune" not in s]
            methods[name] = (name + " (no fine-tuning)", recipe)
        else:
            methods[name] = (name, recipe)
    return methods


def run_all(args: argparse.Namespace, default: dict, epochs: int,
            reuse: dict[str, Path]) -> list[dict]:
    """The default recipe first (the peers prune to its MACs), then every planned peer."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = [run_method("default recipe", default, out, args.data)]
    default_kept = results[0]["macs"] / results[0]["baseline_macs"]
    for name, (label, recipe) in planned(args, default, epochs, default_kept).items():
        if name in reuse:
            print(f"  [{label}] reused from {reuse[name]}", flush=True)
            results.append(method_result(label, compress.read_run(reuse[name]))
                           | {"reused_from": str(reuse[name])})
        else:
            results.append(run_method(label, recipe, out, args.data))
    return results


def main() -> None:
    args = parse_args()
    if not Path(args.data, "val").is_dir():
        raise SystemExit(f"skipped: no data at {args.data} (give --data ROOT)")
    default = default_recipe(args)
    epochs = 1 if args.quick else args.epochs or finetune_epochs(default)
    reuse = reused_folders(args.reuse)
    preview = planned(args, default, epochs, None)
    for name, folder in reuse.items():  # before anything runs
        if name not in preview:
            fail(f"--reuse {name}: not a method of this run ({', '.join(preview)})")
        check_reuse(name, preview[name][1], folder)
    results = run_all(args, default, epochs, reuse)
    # one sitting, each model interleaved with the same baseline file, --rounds times over
    speedups = compress.retime(results[0]["input_onnx"],
                               {r["method"]: r["onnx"] for r in results}, args.runs, args.rounds)
    for result in results:
        result["speedups"] = [c.ratio for c in speedups[result["method"]]]
        result["speedups_fastest_runs"] = [c.min_ratio for c in speedups[result["method"]]]
        result["speedup"] = statistics.median(result["speedups"])
    baseline = {"method": "baseline", "params": None, "macs": results[0]["baseline_macs"],
                "macro_f1": results[0]["baseline_f1"], "speedup": 1.0}
    print_table(baseline, results, epochs, args.runs, args.rounds)
    out = Path(args.out)
    (out / "peers.json").write_text(json.dumps({"baseline": baseline, "methods": results},
                                               indent=1))
    plot(out / "peers.png", baseline, results)
    print(f"wrote {out / 'peers.json'} and {out / 'peers.png'}")


def print_table(baseline: dict, results: list[dict], epochs: int, runs: int,
                rounds: int) -> None:
    print(f"\nSame fine-tuning budget: {epochs} epochs. Speed-up: ONNX Runtime CPU, batch 1, "
          f"each final model interleaved with the baseline, {runs} runs each; the median of "
          f"{rounds} rounds.")
    width = max(28, *(len(r["method"]) + 2 for r in results))  # long peer names stay aligned
    header = f"{'method':<{width}}{'params':>11}{'MACs':>9}{'speed-up':>10}{'macro F1':>10}" \
             f"{'accuracy':>10}{'score':>8}{'minutes':>9}"
    print(header)
    print(f"{'baseline':<{width}}{'':>11}{baseline['macs'] / 1e6:>8.1f}M{1.0:>9.2f}x"
          f"{baseline['macro_f1']:>10.4f}")
    for r in results:
        print(f"{r['method']:<{width}}{r['params']:>11,}{r['macs'] / 1e6:>8.1f}M"
              f"{r['speedup']:>9.2f}x"
              f"{r['macro_f1']:>10.4f}{r['accuracy']:>10.4f}{r['score']:>8.4f}"
              f"{r['minutes']:>9.1f}")
    for r in results:
        if "reused_from" in r:
            print(f"{r['method']}: reused from {r['reused_from']}")


def plot(path: Path, baseline: dict, results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # a benchmark's own figure: the library's plotting is internal
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5))
    for point in [baseline] + results:
        axes.scatter(point["speedup"], point["macro_f1"], s=40)
        axes.annotate(point["method"], (point["speedup"], point["macro_f1"]),
                      textcoords="offset points", xytext=(5, 4), fontsize=8)
    axes.set_xlabel("batch-1 speed-up over the baseline (ONNX Runtime CPU, interleaved)")
    axes.set_ylabel("val macro F1")
    axes.set_title("compress default recipe vs single-technique peers (same fine-tuning)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()

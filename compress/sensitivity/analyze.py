"""`compress analyze`: the per-layer sensitivity table and plot of a checkpoint.

For each channel group at each ratio, and each squeeze-excite gate and residual block,
alone: val macro F1 after BatchNorm re-estimation, MACs saved, and on request the batch-1
latency saved (ONNX Runtime, interleaved). A prune stage with `ratio: auto` runs the same
analysis for its channel groups.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from compress.errors import UserError
from compress.fileio import write_atomic
from compress.plotting import figure_file
from compress.sensitivity.cuts import Cut, SensitivityContext, module_cuts, prune_cuts

KINDS = ("prune", "squeeze_excite", "residual_block")
FILES = ("sensitivity.json", "sensitivity.csv", "sensitivity.png")


def parse_kinds(text: str) -> list[str]:
    """`prune,squeeze_excite` -> the kinds, each one of KINDS."""
    chosen = [k.strip() for k in text.split(",") if k.strip()]
    unknown = sorted(set(chosen) - set(KINDS))
    if unknown or not chosen:
        raise UserError(f"--kinds: unknown {', '.join(unknown) or '(none given)'}; choose from "
                        + ", ".join(KINDS))
    return chosen


def parse_ratios(text: str) -> list[float]:
    """`0.25,0.5` -> channel ratios, each strictly between 0 and 1."""
    try:
        ratios = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        ratios = []
    if not ratios or any(not 0 < r < 1 for r in ratios):
        raise UserError(f"--ratios {text!r}: give comma-separated ratios between 0 and 1")
    return ratios


@dataclass(frozen=True)
class AnalyzeOptions:
    """What `compress analyze` tries, and on how many calibration images."""

    kinds: tuple[str, ...] = KINDS
    ratios: tuple[float, ...] = (0.25, 0.5, 0.75)  # channel ratios tried per group
    measure_latency: bool = False  # time each cut against the model (slower)
    calibration_images: int = 256  # training images for BatchNorm re-estimation
    seed: int = 0

    @classmethod
    def from_command_line(cls, kinds: str, ratios: str, **rest) -> AnalyzeOptions:
        """--kinds and --ratios as typed (checked before any work starts)."""
        return cls(tuple(parse_kinds(kinds)), tuple(parse_ratios(ratios)), **rest)


@dataclass(frozen=True)
class Analysis:
    """What `compress analyze` found and where it wrote it."""

    baseline_f1: float
    cuts: list[Cut]
    latency: bool  # whether each cut was timed
    out_dir: Path
    judged_on: str = "val"  # the split whose macro F1 judged the cuts

    def table_lines(self) -> list[str]:
        """The cuts from the least to the most harmful, and the files written."""
        lines = [f"baseline macro F1 {self.baseline_f1:.4f} on {self.judged_on} (BatchNorm "
                 "re-estimated)",
                 f"{'kind':<16}{'target':<34}{'ratio':>6}{'F1 drop':>9}{'MACs saved':>12}"
                 + ("  latency saved" if self.latency else "")]
        for c in sorted(self.cuts, key=lambda c: c.f1_drop):
            lines.append(f"{c.kind:<16}{c.target:<34}{c.ratio:>6.2f}{c.f1_drop:>9.4f}"
                         f"{c.macs_saved:>12,}" + (f"  {c.latency_saved:>12.1%}"
                                                   if c.latency_saved is not None else ""))
        lines.append(f"wrote {self.out_dir}/{', '.join(FILES)}")
        return lines


def analyze_to_folder(checkpoint_path: str, data_root: str, out: str | Path,
                      options: AnalyzeOptions = AnalyzeOptions(),
                      progress: Callable[[str], None] = lambda what: None) -> Analysis:
    """`compress analyze`: the analysis, and its table, CSV and plot written as FILES in
    `out`."""
    baseline_f1, cuts, judged_on = analyze_checkpoint(checkpoint_path, data_root, options,
                                                      progress)
    out_dir = Path(out)
    write_atomic(out_dir / FILES[0], json.dumps(
        {"checkpoint": checkpoint_path, "baseline_macro_f1": baseline_f1,
         "judged_on": judged_on, "cuts": [c.as_dict() for c in cuts]}, indent=1))
    write_atomic(out_dir / FILES[1], cuts_csv(cuts))
    plot_cuts(out_dir / FILES[2], cuts, baseline_f1, judged_on)
    return Analysis(baseline_f1, cuts, options.measure_latency, out_dir, judged_on)


def analyze_checkpoint(checkpoint_path: str, data_root: str, options: AnalyzeOptions,
                       progress: Callable[[str], None]) -> tuple[float, list[Cut], str]:
    from compress.checkpoint import load_checkpoint
    from compress.data.training_data import TrainingDataOptions, open_training_data

    checkpoint = load_checkpoint(checkpoint_path)
    data = open_training_data(data_root, checkpoint.classes, checkpoint.input_size,
                              TrainingDataOptions(cache_train=False,
                                                  held_out=checkpoint.held_out_split))
    ctx = SensitivityContext(
        checkpoint.input_size, checkpoint.classes,
        data.calibration_images(options.calibration_images, checkpoint.input_size,
                                options.seed),
        data.decision_split, measure_latency=options.measure_latency, seed=options.seed)
    model = checkpoint.model.eval()
    cuts: list[Cut] = []
    baseline_f1 = None
    if "prune" in options.kinds:
        baseline_f1, found = prune_cuts(model, ctx, options.ratios, progress=progress)
        cuts += found
    module_kinds = [k for k in options.kinds if k != "prune"]
    if module_kinds:
        baseline_f1, found = module_cuts(model, ctx, module_kinds, progress=progress)
        cuts += found
    judged_on = "val" if data.calibration is None else "the calibration split"
    return baseline_f1, cuts, judged_on


def cuts_csv(cuts: list[Cut]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["kind", "target", "ratio", "macro_f1", "f1_drop", "macs_saved",
                     "latency_saved"])
    for c in cuts:
        writer.writerow([c.kind, c.target, c.ratio, f"{c.macro_f1:.4f}", f"{c.f1_drop:.4f}",
                         c.macs_saved, "" if c.latency_saved is None
                         else f"{c.latency_saved:.4f}"])
    return buffer.getvalue()


def plot_cuts(path: Path, cuts: list[Cut], baseline_f1: float, judged_on: str = "val"
              ) -> Path:
    """F1 drop against what each cut saves (latency when measured, else MACs)."""
    by_latency = all(c.latency_saved is not None for c in cuts)
    with figure_file(path, size=(8, 5)) as axes:
        for kind, marker in zip(KINDS, "o^s"):
            chosen = [c for c in cuts if c.kind == kind]
            if chosen:
                saved = [100 * c.latency_saved if by_latency else c.macs_saved / 1e6
                         for c in chosen]
                axes.scatter(saved, [100 * c.f1_drop for c in chosen], marker=marker,
                             label=kind)
        axes.axhline(0, color="grey", linewidth=0.5)
        axes.set_xlabel("batch-1 latency saved (%)" if by_latency else "MACs saved (M)")
        axes.set_ylabel(f"macro F1 drop on {judged_on} (points; baseline {baseline_f1:.4f})")
        axes.set_title("Sensitivity of each cut alone (BatchNorm re-estimated, no training)")
        axes.legend()
    return path

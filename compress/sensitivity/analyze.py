"""`compress analyze`: the per-layer sensitivity table and plot of a checkpoint.

For each channel group at each ratio, and each squeeze-excite gate and residual block,
alone: val macro F1 after BatchNorm re-estimation, MACs saved, and on request the batch-1
latency saved (ONNX Runtime, interleaved). A prune stage with `ratio: auto` runs the same
analysis for its channel groups.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Callable

from compress.sensitivity.cuts import (
    Cut,
    SensitivityContext,
    calibration_subset,
    module_cuts,
    prune_cuts,
)

KINDS = ("prune", "squeeze_excite", "residual_block")


def analyze_checkpoint(checkpoint_path: str, data_root: str, kinds: list[str],
                       ratios: list[float], measure_latency: bool, calibration_images: int,
                       seed: int, progress: Callable[[str], None]) -> tuple[float, list[Cut]]:
    from compress.checkpoint import load_checkpoint
    from compress.data.training_data import open_training_data
    from compress.data.transforms import eval_transform

    checkpoint = load_checkpoint(checkpoint_path)
    data = open_training_data(data_root, checkpoint.classes, checkpoint.input_size,
                              cache_train=False)
    ctx = SensitivityContext(
        checkpoint.input_size, checkpoint.classes,
        calibration_subset(data.train.with_transform(eval_transform(checkpoint.input_size)),
                           calibration_images, seed),
        data.val, measure_latency=measure_latency, seed=seed)
    model = checkpoint.model.eval()
    cuts: list[Cut] = []
    baseline_f1 = None
    if "prune" in kinds:
        baseline_f1, found = prune_cuts(model, ctx, ratios, progress=progress)
        cuts += found
    module_kinds = [k for k in kinds if k != "prune"]
    if module_kinds:
        baseline_f1, found = module_cuts(model, ctx, module_kinds, progress=progress)
        cuts += found
    return baseline_f1, cuts


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


def plot_cuts(path: Path, cuts: list[Cut], baseline_f1: float) -> Path:
    """F1 drop against what each cut saves (latency when measured, else MACs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_latency = all(c.latency_saved is not None for c in cuts)
    figure, axes = plt.subplots(figsize=(8, 5))
    for kind, marker in zip(KINDS, "o^s"):
        chosen = [c for c in cuts if c.kind == kind]
        if chosen:
            saved = [100 * c.latency_saved if by_latency else c.macs_saved / 1e6 for c in chosen]
            axes.scatter(saved, [100 * c.f1_drop for c in chosen], marker=marker, label=kind)
    axes.axhline(0, color="grey", linewidth=0.5)
    axes.set_xlabel("batch-1 latency saved (%)" if by_latency else "MACs saved (M)")
    axes.set_ylabel(f"val macro F1 drop (points; baseline {baseline_f1:.4f})")
    axes.set_title("Sensitivity of each cut alone (BatchNorm re-estimated, no training)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path

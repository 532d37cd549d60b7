"""`compress analyze`: the per-cut sensitivity table and plot of a checkpoint."""

from __future__ import annotations

import click


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--data", "data_root", required=True, help="Data root with train/ and val/.")
@click.option("--out", default="runs/analyze", show_default=True,
              type=click.Path(file_okay=False),
              help="Folder for sensitivity.json, sensitivity.csv and sensitivity.png.")
@click.option("--kinds", default="prune,squeeze_excite,residual_block", show_default=True,
              help="Which cuts to try: prune (channel groups), squeeze_excite, residual_block.")
@click.option("--ratios", default="0.25,0.5,0.75", show_default=True,
              help="Channel ratios tried per group.")
@click.option("--latency/--no-latency", default=False, show_default=True,
              help="Also time each cut against the model (ONNX Runtime, interleaved; slower).")
@click.option("--calibration-images", type=click.IntRange(min=8), default=256,
              show_default=True, help="Training images for BatchNorm re-estimation.")
@click.option("--seed", type=int, default=0, show_default=True)
def analyze(checkpoint, data_root, out, kinds, ratios, latency, calibration_images,
            seed) -> None:
    """Per-layer sensitivity of CHECKPOINT: each cut alone (channel group at a ratio,
    squeeze-excite gate, residual block), its macro F1 after BatchNorm re-estimation
    (no training) on the checkpoint's calibration split (train images it never trained
    on; val when it records none), and the MACs (and latency) it saves. Guides
    `ratio: auto` and `drop`."""
    from compress.sensitivity.analyze import AnalyzeOptions, analyze_to_folder

    options = AnalyzeOptions.from_command_line(kinds, ratios, measure_latency=latency,
                                               calibration_images=calibration_images, seed=seed)
    analysis = analyze_to_folder(checkpoint, data_root, out, options,
                                 progress=lambda what: click.echo(f"trying {what}", err=True))
    for line in analysis.table_lines():
        click.echo(line)

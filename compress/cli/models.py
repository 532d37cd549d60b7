"""`compress inspect`, `import` and `export`: a checkpoint read, made from a team's files,
or written as ONNX."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--input-size", type=click.IntRange(min=8), default=None,
              help="ONNX files without a fixed input size: the size to count MACs at.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def inspect(checkpoint, input_size, as_json) -> None:
    """Layers, parameters, MACs at the stored input size, and classes of CHECKPOINT
    (a compress checkpoint or an .onnx file; MACs by the same convention for both)."""
    from compress.tools.inspect import format_summary, summarize

    summary = summarize(checkpoint, input_size)
    click.echo(json.dumps(summary) if as_json else format_summary(summary))


@click.command("import")
@click.option("--model", "model_yaml", required=True, type=click.Path(dir_okay=False),
              help="The team's model YAML (Kindle format).")
@click.option("--weights", required=True, type=click.Path(dir_okay=False),
              help="Their trained state_dict (best.pt); read with weights_only=True only.")
@click.option("--classes", default=None, help="Comma-separated class names in label order.")
@click.option("--data", "data_root", default=None,
              help="Or take the sorted class folders of DATA/train (or DATA).")
@click.option("--input-size", type=click.IntRange(min=8), default=224, show_default=True,
              help="Square image size the model was trained at (the data YAML's IMG_SIZE).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint to write (.safetensors).")
def import_command(model_yaml, weights, classes, data_root, input_size, out) -> None:
    """Turn a team's model YAML + best.pt into a compress checkpoint."""
    from compress.tools.importer import import_checkpoint

    path = import_checkpoint(model_yaml, weights, out, classes, data_root, input_size)
    click.echo(f"wrote {path}")


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="ONNX file to write.")
@click.option("--fp16", is_flag=True, help="FP16 weights and compute, float32 input/output.")
@click.option("--opset", type=click.IntRange(17, 23), default=17, show_default=True)
@click.option("--data", "data_root", default=None,
              help="Check parity on real val images from this root (else random inputs).")
def export(checkpoint, out, fp16, opset, data_root) -> None:
    """Export CHECKPOINT to ONNX (dynamic batch), checked against the torch model."""
    from compress.tools.single_stage import export_checkpoint

    checks = export_checkpoint(checkpoint, out, fp16, opset, data_root)
    click.echo(f"wrote {out}: " + json.dumps(checks))

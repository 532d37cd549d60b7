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
@click.option("--model", "model_arg", required=True,
              help="A model YAML (the competition's Kindle format), a torchvision classifier "
                   "name (resnet18, mobilenet_v2, convnext_tiny, ...) or a timm name "
                   "(timm/efficientnet_lite0; needs the timm extra).")
@click.option("--weights", required=True, type=click.Path(dir_okay=False),
              help="Your trained weights: a state_dict saved with torch.save (best.pt), also "
                   "inside {'model' | 'state_dict' | 'model_state_dict' | 'ema' ...} and with "
                   "DDP's 'module.' prefix, or a safetensors file (timm's format). Read with "
                   "weights_only=True only: nothing is unpickled.")
@click.option("--classes", default=None, help="Comma-separated class names in label order.")
@click.option("--data", "data_root", default=None,
              help="Or take the sorted class folders of DATA/train (or DATA).")
@click.option("--input-size", type=click.IntRange(min=8), default=224, show_default=True,
              help="Square image size the model was trained at (the data YAML's IMG_SIZE).")
@click.option("--width-mult", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Width the weights were trained at (YAML width_multiple, or torchvision's "
                   "width_mult for the MobileNets).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint to write (.safetensors).")
def import_command(model_arg, weights, classes, data_root, input_size, width_mult, out) -> None:
    """Turn a model and its trained weights into a compress checkpoint.

    A classifier head trained for another number of classes (an ImageNet head) is replaced
    by a fresh one, with a note: fine-tune before use.

    \b
    compress import --model resnet18 --weights best.pt --data ../data/trashnet --out r18.safetensors
    compress import --model recipes/models/mobilenetv3.yaml --weights best.pt --classes a,b,c --out m.safetensors
    """
    from compress.tools.importer import import_checkpoint

    path, note = import_checkpoint(model_arg, weights, out, classes, data_root, input_size,
                                   width_mult)
    if note:
        click.echo(f"note: {note}", err=True)
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

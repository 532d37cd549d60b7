"""The `compress` command line. Each command parses, calls the library and prints."""

from __future__ import annotations

import json
import logging
import sys

import click

from compress import __version__
from compress.errors import UserError


def _one_line(exc: BaseException) -> str:
    message = str(exc).strip()
    if "Original Traceback" in message:  # re-raised from a DataLoader worker
        message = message.splitlines()[-1].split(": ", 1)[-1]
    return message.splitlines()[0] if message else type(exc).__name__


class _Group(click.Group):
    """User errors end with one line on stderr and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"error: {_one_line(exc)}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: finished steps are kept; run again to resume", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="compress")
def main() -> None:
    """Compress small vision classifiers: prune, decompose, fine-tune, export, measure."""
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING)


@main.command()
@click.option("--model", "model_arg", required=True,
              help="Model YAML (Kindle format) or a torchvision name such as mobilenet_v3_small.")
@click.option("--data", "data_yaml", required=True, type=click.Path(dir_okay=False),
              help="Data YAML with the competition's keys (DATA_PATH, IMG_SIZE, EPOCHS, ...).")
@click.option("--data-root", default=None, help="Overrides DATA_PATH of the data YAML.")
@click.option("--out", default="runs/train", show_default=True, type=click.Path(file_okay=False),
              help="Output folder: best.safetensors, last.safetensors, history.json.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Overrides EPOCHS.")
@click.option("--width-mult", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Width multiplier (YAML width_multiple or torchvision width_mult).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue an interrupted run found in --out.")
def train(model_arg, data_yaml, data_root, out, epochs, width_mult, device, resume) -> None:
    """Train a model from scratch; the best epoch by val macro F1 is kept."""
    from dataclasses import replace

    from compress.data import find_classes, load_data_config, split_folder
    from compress.models import model_spec_from_arg
    from compress.train import train_from_data_config

    config = load_data_config(data_yaml, data_root)
    if epochs is not None:
        config = replace(config, epochs=epochs)
    classes = find_classes(split_folder(config.data_path, "train"))
    spec = model_spec_from_arg(model_arg, num_classes=len(classes), width_mult=width_mult)
    command = "compress train " + " ".join(sys.argv[2:])
    result = train_from_data_config(spec, config, out, device, resume,
                                    provenance={"command": command})
    click.echo(f"best val macro F1 {result.best_f1:.4f} at epoch {result.best_epoch}: "
               f"{result.best_path}")

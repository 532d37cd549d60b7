"""`compress bench` and `compress predict`: a model timed alone, or end to end on a folder
of images (the competition's submit time)."""

from __future__ import annotations

import click

from compress.measure.runners import PROVIDER_CHOICES


def _batch_sizes(ctx, param, value: str) -> list[int]:
    try:
        sizes = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of batch sizes >= 1")
    return sizes


def _echo_err(line: str) -> None:
    click.echo(line, err=True)


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--provider", type=click.Choice(PROVIDER_CHOICES), default="cpu",
              show_default=True, help="ONNX Runtime execution provider (a checkpoint: torch on "
              "cpu or cuda). auto picks the best one that loads and says which.")
@click.option("--batch", "batches", default="1,8", show_default=True, callback=_batch_sizes,
              help="Batch sizes to sweep, comma-separated.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Intra-op threads [default: the cores this process may use].")
@click.option("--warmup", type=click.IntRange(min=0), default=20, show_default=True,
              help="Untimed runs first (and at least 0.5 s of them).")
@click.option("--runs", type=click.IntRange(min=2), default=300, show_default=True,
              help="Timed runs per batch size (per model with --compare).")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Time for this long per batch size instead of a number of runs.")
@click.option("--input-size", type=click.IntRange(min=8), default=None,
              help="Square input size [default: from the model].")
@click.option("--compare", "other_path", type=click.Path(dir_okay=False), default=None,
              help="A second model timed interleaved with MODEL; prints the ratio of medians.")
@click.option("--compile", "compile_model", is_flag=True,
              help="Checkpoints only: time torch.compile's model instead of eager mode.")
@click.option("--peak/--no-peak", default=True, show_default=True,
              help="Measure this device's float32 MatMul peak (GFLOP/s) for comparison.")
@click.option("--profile", is_flag=True,
              help="ONNX files: also the share of the batch-1 time per op type (ONNX "
              "Runtime's profiler), and the time between kernels.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per batch size on stdout (machine header on stderr).")
def bench(model, provider, batches, threads, warmup, runs, seconds, input_size, other_path,
          compile_model, peak, profile, as_json) -> None:
    """Latency of MODEL (an .onnx file, or a checkpoint run in torch) per batch size:
    median, p90, p99, mean, std, images/s, MACs and achieved GFLOP/s.

    The median is the headline figure. For a fair A/B on a noisy machine use --compare:
    both models run in alternating blocks and the speed-up is the ratio of their medians.
    """
    from compress.tools.bench import bench_files

    bench_files(model, other_path, provider=provider, batches=batches, threads=threads,
                warmup=warmup, runs=runs, seconds=seconds, input_size=input_size,
                compile_model=compile_model, peak=peak, profile=profile, as_json=as_json,
                echo=click.echo,
                note=_echo_err)


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--images", "images_dir", required=True, type=click.Path(file_okay=False),
              help="Folder of images (searched recursively).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="File to write, e.g. submission.csv.")
@click.option("--format", "output_format", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True, help="csv: rows file,class. json: one object {file: class} "
              "(the competition wrote this into its submission.csv).")
@click.option("--provider", type=click.Choice(PROVIDER_CHOICES), default="cpu",
              show_default=True, help="ONNX Runtime execution provider (checkpoints: torch).")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Images per model call; 1 is the competition's setting.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Decoding processes working ahead of the model [default: usable cores].")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Model intra-op threads [default: usable cores].")
@click.option("--classes", "classes_option", default=None,
              help="Comma-separated class names, for files that do not store them.")
def predict(model, images_dir, out, output_format, provider, batch_size, workers, threads,
            classes_option) -> None:
    """Predict the class of every image in a folder and report the end-to-end time
    (decode, square-pad, resize, normalise, infer): the competition's "submit time"."""
    from compress.tools.predict import predict_folder, summary_line

    result = predict_folder(model, images_dir, out, output_format, provider, batch_size,
                            workers, threads, classes_option, note=_echo_err)
    click.echo(summary_line(out, result))

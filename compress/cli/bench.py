"""`compress bench` and `compress predict`: a model timed alone, or end to end on a folder
of images (the competition's submit time)."""

from __future__ import annotations

from pathlib import Path

import click

from compress.measure.runners import PROVIDER_CHOICES
from compress.measure.runtime import DEVICES, RUNTIMES, RunnerOptions
from compress.measure.torch_runner import PRECISIONS


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


def runner_options(function):
    """--runtime, --device, --provider, --precision, --graphs: how MODEL is run."""
    options = [
        click.option("--runtime", type=click.Choice(RUNTIMES), default="auto",
                     show_default=True, help="onnxruntime, openvino (CPU; the openvino extra) "
                     "or torch; auto: ONNX files in ONNX Runtime, checkpoints in torch. A "
                     "checkpoint given --runtime onnxruntime or openvino is exported to a "
                     "temporary ONNX file first."),
        click.option("--device", type=click.Choice(DEVICES), default=None,
                     help="cpu or cuda (auto: cuda where torch sees a GPU) [default: follows "
                     "--provider, else cpu]."),
        click.option("--provider", type=click.Choice(PROVIDER_CHOICES), default=None,
                     help="ONNX Runtime's execution provider [default: follows --device]; "
                     "auto picks the best one that loads and says which."),
        click.option("--precision", type=click.Choice(list(PRECISIONS)), default=None,
                     help="torch only: weights and activations [default: fp16 on cuda, fp32 "
                     "on cpu]."),
        click.option("--graphs/--no-graphs", default=None,
                     help="torch on cuda only: replay a CUDA graph captured per batch size "
                     "[default: on]; the model runs channels-last from pinned input buffers."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@runner_options
@click.option("--batch", "batches", default="1,8", show_default=True, callback=_batch_sizes,
              help="Batch sizes to sweep, comma-separated.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Intra-op threads [default: the cores this process may use].")
@click.option("--warmup", type=click.IntRange(min=0), default=20, show_default=True,
              help="Untimed runs first (and at least 0.5 s of them); 0: none at all.")
@click.option("--runs", type=click.IntRange(min=2), default=300, show_default=True,
              help="Timed runs per batch size (per model with --compare).")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Time for this long per batch size instead of a number of runs.")
@click.option("--input-size", type=click.IntRange(min=8), default=None,
              help="Square input size [default: from the model].")
@click.option("--compare", "other_path", type=click.Path(dir_okay=False), default=None,
              help="A second model timed interleaved with MODEL; prints the speed-up (per-cycle "
              "ratio of medians) and its spread.")
@click.option("--compile", "compile_model", is_flag=True,
              help="torch only: time torch.compile's model.")
@click.option("--peak/--no-peak", default=True, show_default=True,
              help="Measure this device's matrix-product peak (GFLOP/s) for comparison.")
@click.option("--profile", is_flag=True,
              help="ONNX files: also the share of the batch-1 time per op type (ONNX "
              "Runtime's profiler), and the time between kernels.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per batch size on stdout (machine header on stderr).")
def bench(model, runtime, device, provider, precision, graphs, batches, threads, warmup, runs,
          seconds, input_size, other_path, compile_model, peak, profile, as_json) -> None:
    """Latency of MODEL (an .onnx file, or a checkpoint run in torch) per batch size:
    p10, median, p90, p99, mean, std, images/s, MACs and achieved GFLOP/s.

    The median is the headline figure. For a fair A/B on a noisy machine use --compare:
    both models run in alternating blocks, in one runtime, and the speed-up is the median
    over cycles of the ratio of their block medians (p10-p90: its spread).

    Runs timed while other processes used the cores (more than 0.2 cores, from the kernel's
    counters) are left out and timed again, up to 3x the runs asked for
    (COMPRESS_RETIME_LIMIT); a row that could not get clear of them is marked `disturbed`.

    On a GPU, torch runs the model as it would be deployed (FP16, channels-last, a CUDA
    graph per batch size; a call includes the copies in and out), and the launch floor (a
    one-kernel model timed the same way) is printed next to the peak: at batch 1 a small
    model is bound by launches, not arithmetic.
    """
    from compress.tools.bench import BenchOptions, bench_files

    runner = RunnerOptions(runtime, device, provider, threads, precision, graphs, compile_model)
    bench_files(model, other_path, BenchOptions(
        runner=runner, batches=batches, warmup=warmup, runs=runs, seconds=seconds,
        input_size=input_size, peak=peak, profile=profile, as_json=as_json),
        echo=click.echo, note=_echo_err)


@click.command()
@click.argument("baseline", type=click.Path(dir_okay=False))
@click.argument("models", nargs=-1, required=True, metavar="NAME=MODEL...")
@click.option("--runs", type=click.IntRange(min=2), default=300, show_default=True,
              help="Timed runs per model per round.")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Comparisons of each model with the baseline, one after another.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Also write every round's ratios to this file.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Intra-op threads of every model [default: the runtime's own choice; "
              "ONNX Runtime: one per physical core, with its own thread affinity]. On a shared "
              "VM the default can move a small model's speed-up between two levels for "
              "minutes at a time; one thread reads steadier (docs/latency-plan.md, 'Timing "
              "threads').")
def retime(baseline, models, runs, rounds, json_out, threads) -> None:
    """Speed-ups of finished models over BASELINE, timed again in one sitting: each round
    times every model interleaved with the baseline (batch 1, ONNX Runtime on the CPU for
    .onnx files, torch for checkpoints), and the table gives each model's median over rounds,
    as a ratio of medians and of fastest runs.

    Use it for models made at different times (a new run's final.onnx against an earlier
    one's): a single interleaved comparison on a shared machine moves by several per cent
    between sittings, so figures from different runs are only comparable re-timed together.

    \b
        compress retime baseline.onnx new=runs/a/final.onnx old=runs/b/final.onnx
    """
    from compress.fileio import check_writable, write_json_atomic
    from compress.tools.retime import parse_named_models, retime_json, retime_lines
    from compress.tools.retime import retime as retime_models

    named = parse_named_models(list(models))
    if json_out:
        check_writable(json_out, "--json")
    comparisons = retime_models(baseline, named, runs, rounds, echo=_echo_err, threads=threads)
    for line in retime_lines(baseline, runs, rounds, comparisons, threads):
        click.echo(line)
    if json_out:
        write_json_atomic(Path(json_out), retime_json(baseline, named, runs, comparisons,
                                                      threads))


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--images", "images_dir", required=True, type=click.Path(file_okay=False),
              help="Folder of images (searched recursively).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="File to write, e.g. submission.csv.")
@click.option("--format", "output_format", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True, help="csv: rows file,class. json: one object {file: class} "
              "(the competition wrote this into its submission.csv).")
@runner_options
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Images per model call; 1 is the competition's setting.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Decoding processes working ahead of the model [default: usable cores].")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Model intra-op threads [default: usable cores].")
@click.option("--classes", "classes_option", default=None,
              help="Comma-separated class names, for files that do not store them.")
def predict(model, images_dir, out, output_format, runtime, device, provider, precision, graphs,
            batch_size, workers, threads, classes_option) -> None:
    """Predict the class of every image in a folder and report the end-to-end time
    (decode, square-pad, resize, normalise, infer): the competition's "submit time".

    Decoding runs in worker processes ahead of the model; the summary gives images per
    second, the model's share of the time, how long it waited for images, and which of the
    two bounds the throughput. On a GPU, --runtime torch --device cuda runs the deployed
    form (FP16, CUDA graphs); ONNX Runtime needs onnxruntime-gpu for --device cuda."""
    from compress.tools.predict import PredictOptions, predict_folder, summary_line

    runner = RunnerOptions(runtime, device, provider, threads, precision, graphs)
    result = predict_folder(model, images_dir, out, PredictOptions(
        output_format=output_format, runner=runner, batch_size=batch_size, workers=workers,
        classes=classes_option), note=_echo_err)
    click.echo(summary_line(out, result))

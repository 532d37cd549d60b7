"""The `compress` command line. Each command parses, calls the library and prints."""

from __future__ import annotations

import json
import logging
import sys

import click

from compress import __version__
from compress.errors import UserError
from compress.measure.runners import PROVIDER_CHOICES


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
        except click.UsageError as exc:  # a bad option of a sub-command: one line too
            if exc.ctx is None or exc.ctx.command is self:
                raise
            click.echo(f"error: {exc.ctx.command_path}: {exc.format_message()}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: finished steps are kept; run again to resume", err=True)
            sys.exit(130)


# Shared by train and finetune (the choices are compress.train.KEEP_CHOICES, not imported
# here so that the CLI starts without loading torch).
_keep_option = click.option(
    "--keep", type=click.Choice(["last", "best"]), default="last", show_default=True,
    help="Epoch to keep: the last, or the best by val macro F1 (then the val figure is "
         "optimistic: val chose it).")


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
              help="Output folder: last.safetensors, best.safetensors, history.json.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Overrides EPOCHS.")
@click.option("--width-mult", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Width multiplier (YAML width_multiple or torchvision width_mult).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue an interrupted run found in --out.")
@_keep_option
def train(model_arg, data_yaml, data_root, out, epochs, width_mult, device, resume,
          keep) -> None:
    """Train a model from scratch; the last epoch (or with --keep best, the best) is the result.

    On several GPUs (or CPU processes): torchrun --nproc_per_node K -m compress train ...
    (DistributedDataParallel; --batch in the data YAML stays the global batch).
    """
    from dataclasses import replace

    from compress.data.config import load_data_config
    from compress.data.folders import find_classes, split_folder
    from compress.models import model_spec_from_arg
    from compress.training.distributed import distributed_from_env
    from compress.training.engine import train_from_data_config

    config = load_data_config(data_yaml, data_root)
    if epochs is not None:
        config = replace(config, epochs=epochs)
    classes = find_classes(split_folder(config.data_path, "train"))
    spec = model_spec_from_arg(model_arg, num_classes=len(classes), width_mult=width_mult)
    command = "compress train " + " ".join(sys.argv[2:])
    result = train_from_data_config(spec, config, out, device, resume,
                                    provenance={"command": command}, keep=keep)
    if distributed_from_env().is_main:
        click.echo(_kept_line(result.val_f1, result.epoch, result.best_f1, result.best_epoch,
                              result.path))


@main.command("eval")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--data", "data_root", required=True, help="Data root with SPLIT/<class>/*.jpg.")
@click.option("--split", default="val", show_default=True, help="Split folder: val, test, ...")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_command(checkpoint, data_root, split, batch_size, device, as_json) -> None:
    """Accuracy, macro F1, per-class F1 and confusion matrix of CHECKPOINT on a split."""
    from compress.measure.metrics import format_metrics
    from compress.tools.evaluate import evaluate_checkpoint

    metrics = evaluate_checkpoint(checkpoint, data_root, split, batch_size, device=device)
    if as_json:
        click.echo(json.dumps(metrics))
    else:
        click.echo(f"{checkpoint} on {data_root}/{split}")
        click.echo(format_metrics(metrics, list(metrics["per_class"])))


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--input-size", type=click.IntRange(min=8), default=None,
              help="ONNX files without a fixed input size: the size to count MACs at.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def inspect(checkpoint, input_size, as_json) -> None:
    """Layers, parameters, MACs at the stored input size, and classes of CHECKPOINT
    (a compress checkpoint or an .onnx file; MACs by the same convention for both)."""
    from compress.checkpoint import load_checkpoint
    from compress.tools.inspect import checkpoint_summary, format_summary, onnx_summary

    summary = onnx_summary(checkpoint, input_size) if checkpoint.endswith(".onnx") else \
        checkpoint_summary(load_checkpoint(checkpoint))
    click.echo(json.dumps(summary) if as_json else format_summary(summary))


@main.command("import")
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
    from pathlib import Path

    from compress.checkpoint import import_weights, save_checkpoint
    from compress.data.folders import find_classes

    if (classes is None) == (data_root is None):
        raise UserError("give exactly one of --classes or --data")
    if classes is not None:
        class_names = [c.strip() for c in classes.split(",") if c.strip()]
    else:
        root = Path(data_root)
        class_names = find_classes(root / "train" if (root / "train").is_dir() else root)
    checkpoint = import_weights(model_yaml, weights, class_names, input_size)
    click.echo(f"wrote {save_checkpoint(out, checkpoint)}")


# Options that `run` and `search` share: the same recipe overrides.
_recipe_data_option = click.option(
    "--data", "data_root", default=None,
    help="Data root (ROOT/train, ROOT/val); overrides the recipe's data.root.")
_recipe_set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override a recipe value, e.g. --set stages.1.epochs=1 (repeatable).")


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@_recipe_data_option
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Run folder [default: runs/<recipe name>].")
@_recipe_set_option
@click.option("--resume", is_flag=True, help="Continue after the last finished stage.")
def run(recipe, data_root, out, overrides, resume) -> None:
    """Run a recipe: stages, each saved and measured (latency, MACs, params, F1, score).

    Without a data folder, stages and figures that need images are skipped and marked n/a.
    """
    from pathlib import Path

    from compress.errors import StageFailed
    from compress.pipeline.loop import run_recipe
    from compress.recipe.loading import load_recipe

    parsed = load_recipe(recipe, list(overrides), data_root)
    try:
        run_recipe(parsed, out or Path("runs") / Path(recipe).stem, resume, echo=click.echo)
    except StageFailed as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--data", "data_root", required=True, help="Data root with train/ and val/.")
@click.option("--freeze", default="none", show_default=True,
              help="none, decomposed, convs, all-but-classifier, bn, or comma-separated "
                   "parameter-name patterns to freeze.")
@click.option("--epochs", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.01,
              show_default=True, help="Peak learning rate.")
@click.option("--distill/--no-distill", default=False, show_default=True,
              help="Soft targets from CHECKPOINT itself as the teacher.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", default="auto", show_default=True)
@_keep_option
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder; the result is OUT/finetuned.safetensors.")
def finetune(checkpoint, data_root, freeze, epochs, lr, distill, batch_size, device, keep,
             out) -> None:
    """Fine-tune CHECKPOINT, optionally with layers frozen; keeps the last (or best) epoch.

    On several GPUs (or CPU processes): torchrun --nproc_per_node K -m compress finetune ...
    (DistributedDataParallel, NCCL on GPUs, gloo on CPU; --batch-size stays the global
    batch, so the steps match a one-process run; rank 0 writes the checkpoint).
    """
    from compress.tools.single_stage import finetune_checkpoint
    from compress.training.distributed import distributed_from_env

    policy = freeze if freeze in ("none", "decomposed", "convs", "all-but-classifier", "bn") \
        else [p.strip() for p in freeze.split(",") if p.strip()]
    path, details = finetune_checkpoint(checkpoint, data_root, out, policy, epochs, lr,
                                        distill, batch_size, device, keep)
    if distributed_from_env().is_main:
        click.echo(_kept_line(details["val_macro_f1"], details["kept_epoch"],
                              details["best_val_macro_f1"], details["best_epoch"], path))


def _kept_line(val_f1: float, epoch: int, best_f1: float, best_epoch: int, path) -> str:
    line = f"kept epoch {epoch}: val macro F1 {val_f1:.4f}: {path}"
    if best_epoch != epoch:
        line += f" (best epoch {best_epoch}: {best_f1:.4f}, an optimistic figure: val chose it)"
    return line


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="ONNX file to write.")
@click.option("--fp16", is_flag=True, help="FP16 weights and compute, float32 input/output.")
@click.option("--opset", type=click.IntRange(17, 23), default=17, show_default=True)
@click.option("--data", "data_root", default=None,
              help="Check parity on real val images from this root (else random inputs).")
def export(checkpoint, out, fp16, opset, data_root) -> None:
    """Export CHECKPOINT to ONNX (dynamic batch), checked against the torch model."""
    from compress.errors import StageFailed
    from compress.tools.single_stage import export_checkpoint

    try:
        checks = export_checkpoint(checkpoint, out, fp16, opset, data_root)
    except StageFailed as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"wrote {out}: " + json.dumps(checks))


def _batch_sizes(ctx, param, value: str) -> list[int]:
    try:
        sizes = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of batch sizes >= 1")
    return sizes


@main.command()
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
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per batch size on stdout (machine header on stderr).")
def bench(model, provider, batches, threads, warmup, runs, seconds, input_size, other_path,
          compile_model, peak, as_json) -> None:
    """Latency of MODEL (an .onnx file, or a checkpoint run in torch) per batch size:
    median, p90, p99, mean, std, images/s, MACs and achieved GFLOP/s.

    The median is the headline figure. For a fair A/B on a noisy machine use --compare:
    both models run in alternating blocks and the speed-up is the ratio of their medians.
    """
    from compress.measure.machine import format_machine, machine_info, peak_gflops, usable_cores
    from compress.tools.bench import bench as run_bench
    from compress.tools.bench import format_rows, open_model

    threads = threads or usable_cores()
    info = machine_info(threads)
    target = open_model(model, provider, threads, input_size, compile_model)
    other = open_model(other_path, provider, threads, target.input_size, compile_model) \
        if other_path else None
    say = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    say(format_machine(info))
    for note in {target.note, other and other.note} - {None}:
        say(f"note: {note}")
    say(f"model: {target.path}, {target.input_size}x{target.input_size}, "
        f"{target.macs / 1e6:.2f} M MACs per image, provider {target.runner.provider}"
        + (f"; interleaved with {other.path}" if other else ""))
    rows = run_bench(target, batches, warmup, runs, seconds, other,
                     progress=lambda b: None if as_json else
                     click.echo(f"timing batch {b} ...", err=True))
    peak_value = peak_gflops(provider, threads) if peak and "torch" not in \
        target.runner.provider else None
    if as_json:
        for row in rows:
            click.echo(json.dumps(row.as_dict() | {"model": target.path, "peak_gflops": peak_value}))
        return
    for line in format_rows(rows):
        click.echo(line)
    if other:
        click.echo(f"speed-up = median({other.path}) / median({target.path}), per batch size")
    if peak_value:
        best = max(row.gflops for row in rows)
        click.echo(f"peak float32 MatMul on this device: {peak_value:.1f} GFLOP/s; the model "
                   f"reaches {best:.2f} GFLOP/s ({best / peak_value:.1%} of it)")


@main.command()
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
    from pathlib import Path

    from compress.fileio import write_atomic
    from compress.measure.end_to_end import list_images, predict_files
    from compress.measure.machine import usable_cores
    from compress.tools.bench import open_model
    from compress.tools.predict import format_predictions, model_classes

    out_path = Path(out)
    if out_path.is_dir():
        raise UserError(f"--out {out}: is a folder, give a file name")
    files = list_images(images_dir)
    opened = open_model(model, provider, threads or usable_cores())
    if opened.note:
        click.echo(f"note: {opened.note}", err=True)
    classes = model_classes(opened, classes_option)
    workers = usable_cores() if workers is None else workers
    click.echo(f"predicting {len(files)} images with {model} "
               f"({opened.runner.provider}, batch {batch_size}, {workers} workers)", err=True)
    result = predict_files(opened.runner, files, opened.input_size, batch_size, workers)
    if int(result.labels.max()) >= len(classes):
        raise UserError(f"{model} predicts {int(result.labels.max()) + 1}+ classes but "
                        f"{len(classes)} class names were given")
    write_atomic(out_path, format_predictions(files, Path(images_dir), result.labels, classes,
                                              output_format))
    click.echo(f"wrote {out}: {len(files)} images in {result.seconds:.2f} s "
               f"({result.images_per_s:.1f} images/s end to end; the model took "
               f"{result.model_seconds:.2f} s, {result.model_seconds / result.seconds:.0%})")


@main.command()
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
    squeeze-excite gate, residual block), its val macro F1 after BatchNorm re-estimation
    (no training), and the MACs (and latency) it saves. Guides `ratio: auto` and `drop`."""
    import json
    from pathlib import Path

    from compress.fileio import write_atomic
    from compress.sensitivity.analyze import KINDS, analyze_checkpoint, cuts_csv, plot_cuts

    chosen = [k.strip() for k in kinds.split(",") if k.strip()]
    unknown = sorted(set(chosen) - set(KINDS))
    if unknown or not chosen:
        raise UserError(f"--kinds: unknown {', '.join(unknown) or '(none given)'}; choose from "
                        + ", ".join(KINDS))
    try:
        ratio_list = [float(r) for r in ratios.split(",") if r.strip()]
    except ValueError:
        ratio_list = []
    if not ratio_list or any(not 0 < r < 1 for r in ratio_list):
        raise UserError(f"--ratios {ratios!r}: give comma-separated ratios between 0 and 1")
    baseline_f1, cuts = analyze_checkpoint(
        checkpoint, data_root, chosen, ratio_list, latency, calibration_images, seed,
        progress=lambda what: click.echo(f"trying {what}", err=True))
    out_dir = Path(out)
    write_atomic(out_dir / "sensitivity.json", json.dumps(
        {"checkpoint": checkpoint, "baseline_macro_f1": baseline_f1,
         "cuts": [c.as_dict() for c in cuts]}, indent=1))
    write_atomic(out_dir / "sensitivity.csv", cuts_csv(cuts))
    plot_cuts(out_dir / "sensitivity.png", cuts, baseline_f1)
    click.echo(f"baseline val macro F1 {baseline_f1:.4f} (BatchNorm re-estimated)")
    click.echo(f"{'kind':<16}{'target':<34}{'ratio':>6}{'F1 drop':>9}{'MACs saved':>12}"
               + ("  latency saved" if latency else ""))
    for c in sorted(cuts, key=lambda c: c.f1_drop):
        click.echo(f"{c.kind:<16}{c.target:<34}{c.ratio:>6.2f}{c.f1_drop:>9.4f}"
                   f"{c.macs_saved:>12,}"
                   + (f"  {c.latency_saved:>12.1%}" if c.latency_saved is not None else ""))
    click.echo(f"wrote {out_dir}/sensitivity.json, sensitivity.csv, sensitivity.png")


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--trials", type=click.IntRange(min=1), required=True,
              help="Finished trials the study should hold, all workers together (a rerun "
                   "resumes up to this number).")
@click.option("--storage", default=None, metavar="URL",
              help="Optuna storage [default: sqlite:///OUT/study.db]; postgresql://... lets "
                   "processes on many machines share one study.")
@click.option("--study", "study_name", default=None,
              help="Study name [default: the recipe's file name].")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Trials run in parallel on this machine (processes sharing the cores).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop starting trials after this many seconds.")
@click.option("--minimize", type=click.Choice(["latency", "macs"]), default=None,
              help="The second objective [default: the search block's minimize, latency].")
@_recipe_data_option
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Search folder [default: runs/search/<recipe name>].")
@_recipe_set_option
def search(recipe, trials, storage, study_name, workers, timeout, minimize, data_root, out,
           overrides) -> None:
    """Search the recipe's `search:` space with Optuna: maximise val macro F1, minimise
    batch-1 latency (or MACs). Each trial is a full `compress run` in OUT/trials/; the
    Pareto front is written as OUT/pareto.md, OUT/pareto.png and one runnable recipe per
    front trial in OUT/pareto/. Watch it live with `optuna-dashboard STORAGE_URL`.

    \b
    search:
      minimize: latency            # or macs
      sampler: tpe                 # or nsga2
      min_f1: 0.80                 # constraint
      prune_below_f1: 0.5          # stop trials whose fine-tuning ends below it
      proxy_epochs: 1              # cheap proxy: cap fine-tuning (0: none)
      params:
        stages.0.target_macs: {low: 0.3, high: 0.8}
        stages.1.lr: {low: 0.001, high: 0.05, log: true}
        stages.0.importance: {choices: [l1, l2]}
    """
    from compress.search.study import prepare_search, run_search, write_front

    if minimize:
        overrides += (f"search.minimize={minimize}",)
    job = prepare_search(recipe, trials, storage, study_name, workers, timeout, out,
                         data_root, list(overrides))
    run_search(job, echo=click.echo)
    lines, paths = write_front(job)
    click.echo("Pareto front:")
    for line in lines:
        click.echo(line)
    click.echo(f"wrote {paths['table']}, {paths['plot']}, {paths['json']} and the front's "
               f"recipes in {paths['recipes']}/")

"""`compress train`, `finetune` and `eval`: a model trained, fine-tuned or scored."""

from __future__ import annotations

import json
import sys

import click

from compress import defaults
from compress.errors import UserError

# Shared by train and finetune (the choices are compress.training.engine.KEEP_CHOICES, not
# imported here so that the CLI starts without loading torch).
# Where decoded training images are kept (compress.data.cache); train, finetune, run, search.
new_held_out_option = click.option(
    "--new-held-out", is_flag=True,
    help="Draw a new held-out split (the checkpoint's ratio, stratified, seeded) from the "
         "data folder's train images even where part of the one the checkpoint records is "
         "there. Where none of its images is there (your own photos of the same classes), "
         "one is drawn anyway, said in one line and recorded in the checkpoints written.")
cache_option = click.option(
    "--cache", type=click.Choice(["auto", "ram", "disk", "stream"]), default=None,
    help="Where decoded training images are kept: auto picks by size (a file on disk shared "
         "by every process and reused by the next run; shared memory; or streaming from the "
         "files) [default: the data YAML's CACHE / the recipe's data.cache, else "
         "$COMPRESS_IMAGE_CACHE, else auto].")
_keep_option = click.option(
    "--keep", type=click.Choice(["last", "best"]), default="last", show_default=True,
    help="Epoch to keep: the last, or the best by macro F1 on the held-out train images "
         "(train: CALIBRATION_RATIO in the data YAML; finetune: those the checkpoint records), "
         "else by val (then the val figure is optimistic: val chose it).")


def recovery_options(command):
    """The engine's recovery options, the same on `train` and `finetune`: schedule, warmup,
    distillation mode, mixup, CutMix, weight average."""
    for option in reversed(RECOVERY_OPTIONS):
        command = option(command)
    return command


RECOVERY_OPTIONS = [
    click.option("--schedule", type=click.Choice(["onecycle", "cosine", "constant"]),
                 default="onecycle", show_default=True,
                 help="The learning rate over the steps: OneCycle, or cosine from the peak "
                 "--lr (after --warmup-epochs), or constant."),
    click.option("--warmup-epochs", type=click.FloatRange(min=0), default=0.0,
                 show_default=True,
                 help="cosine: the rate rises linearly from 0 to --lr over these first epochs."),
    click.option("--distill-mode", type=click.Choice(["soft_hard", "function_matching"]),
                 default="soft_hard", show_default=True,
                 help="With a teacher: soft_hard mixes the labels' loss with the teacher's soft "
                 "targets; function_matching trains on the teacher's outputs only, on the very "
                 "(mixed) images the student sees."),
    click.option("--mixup", type=click.FloatRange(min=0), default=0.0, show_default=True,
                 help="Mixup alpha: each batch blended with itself reversed; 0: off."),
    click.option("--cutmix", type=click.FloatRange(min=0), default=0.0, show_default=True,
                 help="CutMix alpha: a box of the reversed batch pasted in; 0: off."),
    click.option("--ema", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                 default=None,
                 help="Keep an average of the weights with this decay per step (e.g. 0.998): "
                 "it is evaluated, kept and saved instead of the raw weights."),
]


def recovery_settings(schedule: str, warmup_epochs: float, mixup: float, cutmix: float,
                      ema: float | None) -> dict:
    """The recovery options as the finetune stage's keys."""
    settings = {"schedule": schedule, "warmup_epochs": warmup_epochs, "ema": ema}
    if mixup or cutmix:
        settings["mix"] = {"mixup_alpha": mixup, "cutmix_alpha": cutmix}
    return settings


@click.command()
@click.option("--model", "model_arg", required=True,
              help="Model YAML (Kindle format), a torchvision name such as mobilenet_v3_small, "
                   "or a timm name (timm/efficientnet_lite0; needs the timm extra).")
@click.option("--data", "data_yaml", required=True, type=click.Path(dir_okay=False),
              help="Data YAML with the competition's keys (DATA_PATH, IMG_SIZE, EPOCHS, ...).")
@click.option("--data-root", default=None, help="Overrides DATA_PATH of the data YAML.")
@click.option("--out", default="runs/train", show_default=True, type=click.Path(file_okay=False),
              help="Output folder: last.safetensors, best.safetensors, history.json.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Overrides EPOCHS.")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Overrides SEED: weights, batch order and the held-out split it draws "
              "(unless the data YAML sets CALIBRATION_SEED).")
@click.option("--width-mult", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Width multiplier (YAML width_multiple, or width_mult of the torchvision "
                   "MobileNets; other families come in named widths).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue an interrupted run found in --out.")
@_keep_option
@click.option("--teacher", type=click.Path(dir_okay=False), default=None,
              help="Distil from this checkpoint while training (same classes), e.g. the large "
                   "baseline for a small model: a better start for compressing to a budget.")
@click.option("--distill-alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="With --teacher: weight of the soft-target loss (1 - alpha on the labels).")
@click.option("--distill-temperature", type=click.FloatRange(min=0, min_open=True),
              default=4.0, show_default=True, help="With --teacher: softmax temperature.")
@recovery_options
@cache_option
def train(model_arg, data_yaml, data_root, out, epochs, seed, width_mult, device, resume,
          keep, teacher, distill_alpha, distill_temperature, schedule, warmup_epochs,
          distill_mode, mixup, cutmix, ema, cache) -> None:
    """Train a model from scratch; the last epoch (or with --keep best, the best) is the result.

    On several GPUs (or CPU processes): torchrun --nproc_per_node K -m compress train ...
    (DistributedDataParallel; --batch in the data YAML stays the global batch).
    """
    from compress.tools.train import TrainOptions, kept_line, train_from_yaml
    from compress.training.distributed import distributed_from_env

    if teacher is None:
        given = [f"--{name.replace('_', '-')}" for name in
                 ("distill_alpha", "distill_temperature", "distill_mode")
                 if click.get_current_context().get_parameter_source(name).name != "DEFAULT"]
        if given:
            raise UserError(f"{' and '.join(given)} only apply with --teacher")
    distill = None if teacher is None else \
        {"teacher": teacher, "alpha": distill_alpha, "temperature": distill_temperature,
         "mode": distill_mode}
    recovery = {"schedule": schedule, "warmup_epochs": warmup_epochs, "mixup_alpha": mixup,
                "cutmix_alpha": cutmix, "ema_decay": ema}
    result = train_from_yaml(model_arg, data_yaml, TrainOptions(
        out=out, data_root=data_root, epochs=epochs, seed=seed, cache=cache,
        width_mult=width_mult, device=device, resume=resume, keep=keep, distill=distill,
        recovery=recovery, provenance={"command": "compress train " + " ".join(sys.argv[2:])}))
    if distributed_from_env().is_main:
        click.echo(kept_line(result.val_f1, result.epoch, result.best_f1, result.best_epoch,
                             result.path, result.best_judged_on))


@click.command()
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
@click.option("--teacher", type=click.Path(dir_okay=False), default=None,
              help="Distil from this checkpoint instead (same classes; implies --distill), "
                   "e.g. the large baseline for a small model trained from scratch.")
@click.option("--grad-clip", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Clip the gradients' global norm to this value.")
@click.option("--batch-size", type=click.IntRange(min=1), default=defaults.BATCH_SIZE,
              show_default=True)
@click.option("--device", default="auto", show_default=True)
@recovery_options
@click.option("--seed", type=int, default=defaults.SEED, show_default=True,
              help="The training's seed: batch order, augmentation, mixing.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--rewind", is_flag=True,
              help="Learning-rate rewinding: the peak --lr and --epochs of the checkpoint's "
              "own recorded training, cosine after 5 %% warmup (give neither --lr, "
              "--epochs nor --schedule).")
@click.option("--reinit", is_flag=True,
              help="Train the checkpoint's architecture from fresh weights (seeded), not its "
              "own: the control for whether the inherited weights are worth anything.")
@_keep_option
@cache_option
@new_held_out_option
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder; the result is OUT/finetuned.safetensors.")
@click.option("--track", type=click.Choice(["mlflow"]), default=None,
              help="Log the fine-tune (options, each epoch's loss and F1, the result) to "
                   "MLflow (the mlflow extra).")
@click.option("--tracking-uri", default=None, metavar="URI",
              help="MLflow tracking URI [default: sqlite:///mlflow.db in the folder that "
                   "holds --out].")
def finetune(checkpoint, data_root, freeze, epochs, lr, distill, teacher, grad_clip,
             batch_size, device, schedule, warmup_epochs, distill_mode, mixup, cutmix, ema,
             seed, weight_decay, rewind, reinit, keep, cache, new_held_out, out, track,
             tracking_uri) -> None:
    """Fine-tune CHECKPOINT, optionally with layers frozen; keeps the last (or best) epoch.

    On several GPUs (or CPU processes): torchrun --nproc_per_node K -m compress finetune ...
    (DistributedDataParallel, NCCL on GPUs, gloo on CPU; --batch-size stays the global
    batch, so the steps match a one-process run; rank 0 writes the checkpoint).
    """
    from pathlib import Path

    from compress.tools.single_stage import FinetuneOptions, finetune_checkpoint, finetune_tracker
    from compress.tools.train import kept_line
    from compress.training.distributed import distributed_from_env

    main_process = distributed_from_env().is_main
    recovery = recovery_settings(schedule, warmup_epochs, mixup, cutmix, ema) | {
        "weight_decay": weight_decay, "reinit": reinit}
    if rewind:  # the stage takes them from the checkpoint: only what the user typed goes on
        given = click.get_current_context().get_parameter_source
        recovery = {key: value for key, value in recovery.items()
                    if key == "mix" or given(key).name != "DEFAULT"} | {"rewind": True}
        recovery |= {key: value for key, value in (("lr", lr), ("epochs", epochs))
                     if given(key).name != "DEFAULT"}
    options = {"checkpoint": checkpoint, "data": data_root, "freeze": freeze, "epochs": epochs,
               "lr": lr, "distill": distill, "teacher": teacher, "grad_clip": grad_clip,
               "batch_size": batch_size, "device": device, "keep": keep,
               "distill_mode": distill_mode, "seed": seed, **recovery}
    tracker = finetune_tracker(track if main_process else None, tracking_uri, out, options,
                               click.echo)
    try:
        path, details = finetune_checkpoint(checkpoint, data_root, out, FinetuneOptions(
            freeze=freeze, epochs=epochs, lr=lr, distill=distill, batch_size=batch_size,
            device=device, keep=keep, teacher=teacher, grad_clip=grad_clip,
            cache=cache or "auto", new_held_out=new_held_out, recovery=recovery,
            distill_mode=distill_mode, seed=seed))
    except BaseException:
        tracker.finish(failed=True)
        raise
    if main_process:
        click.echo(kept_line(details["val_macro_f1"], details["kept_epoch"],
                             details["best_val_macro_f1"], details["best_epoch"], path,
                             details["best_judged_on"]))
        tracker.epochs(Path(out) / "train" / "history.json")
        tracker.metrics({"val_macro_f1": details["val_macro_f1"],
                         "kept_epoch": details["kept_epoch"]})
        tracker.files([Path(out) / "finetune.json"])
        tracker.finish()


@click.command("eval")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--data", "data_root", required=True, help="Data root with SPLIT/<class>/*.jpg.")
@click.option("--split", default="val", show_default=True,
              help="Split folder: val, test, ...; or held-out: the train images the checkpoint "
                   "records as never trained on (compress train with CALIBRATION_RATIO).")
@click.option("--batch-size", type=click.IntRange(min=1), default=defaults.BATCH_SIZE,
              show_default=True)
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
        shown = "train (its held-out images)" if split == "held-out" else split
        click.echo(f"{checkpoint} on {data_root}/{shown}")
        click.echo(format_metrics(metrics, list(metrics["per_class"])))

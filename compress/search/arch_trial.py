"""One architecture-search trial: a design drawn from the space, trained from scratch with
the proxy (`compress train` on the trial's data YAML values), judged by its macro F1 on the
train images held out of training (never val, which is reported beside it), and timed at
batch 1 in ONNX Runtime on this machine's CPU, interleaved with the reference model.
"""

from __future__ import annotations

import atexit
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from compress.data.config import DataConfig
from compress.errors import first_line
from compress.fileio import file_lock
from compress.search.arch_job import ArchJob, reference_model
from compress.search.architecture import Design
from compress.search.objective import format_value

MEDIAN_AFTER = 3  # finished trials before the median rule stops any trial
_timer = None  # this process's timing worker, started on the first trial
_reference: tuple[Path, int] | None = None  # this process's reference ONNX file and size


def objective(trial, job: ArchJob, echo: Callable[[str], None]) -> tuple[float, float]:
    """Train and time one design; return (held-out macro F1, the second objective)."""
    import optuna

    values = {name: spec.suggest(trial, name) for name, spec in job.params.items()}
    design = job.space.design(values)
    trial.set_user_attr("design", {"model": design.config, "input_size": design.input_size,
                                   "lr": design.lr,
                                   "randaugment_magnitude": design.randaugment_magnitude})
    trial.set_user_attr("design_key", design.key)
    twin = _twin(trial, design.key)
    if twin is not None:  # the same design again: its figures, not a second training
        for key, value in twin.user_attrs.items():
            trial.set_user_attr(key, value)
        for key, value in (twin.constraints or {}).items():
            trial.set_constraint(key, value)
        trial.set_user_attr("copy_of", twin.number)
        echo(f"trial {trial.number}: same design as trial {twin.number}, reused")
        return twin.values
    trial_dir = job.out_dir / "trials" / f"{job.study_name}-{trial.number:04d}"
    trial.set_user_attr("run_dir", str(trial_dir))
    echo(f"trial {trial.number} started: {design.input_size} px, "
         + ", ".join(f"{name}={format_value(v)}" for name, v in values.items()))
    started = time.perf_counter()
    try:
        held_out_f1, val_f1, model = _train(trial, job, design, trial_dir)
    except optuna.TrialPruned as pruned:
        echo(str(pruned))
        raise
    figures = _measure(job, design, model, trial_dir)
    figures.update(held_out_macro_f1=held_out_f1, macro_f1=val_f1, judged_on="held-out",
                   minutes=(time.perf_counter() - started) / 60)
    trial.set_user_attr("figures", figures)
    if job.section.min_f1 is not None:  # feasible when <= 0 (Optuna's convention)
        trial.set_constraint("min_f1", job.section.min_f1 - held_out_f1)
    echo(f"trial {trial.number} done: held-out macro F1 {held_out_f1:.4f} (val "
         f"{val_f1:.4f}), {figures['speedup']:.2f}x faster than the reference, "
         f"{figures['macs'] / 1e6:.1f} M MACs, {figures['params']:,} params, "
         f"{figures['minutes']:.1f} min")
    return held_out_f1, second_objective(job.section.minimize, figures)


def second_objective(minimize: str, figures: dict[str, Any]) -> float:
    if minimize == "latency":
        return 1 / figures["speedup"]
    return figures["macs" if minimize == "macs" else "params"] / 1e6


def proxy_data(job: ArchJob, design: Design) -> DataConfig:
    """The data YAML's values a trial trains with: the proxy's epochs and scaled input,
    the design's learning rate and RandAugment magnitude."""
    return full_data(job, design, epochs=job.section.proxy.epochs,
                     img_size=max(8, round(design.input_size * job.section.proxy.image_scale)))


def full_data(job: ArchJob, design: Design, epochs: int | None = None,
              img_size: int | None = None) -> DataConfig:
    """The data YAML's values for training the design fully (its own input size, the data
    YAML's epochs), with the design's training values."""
    data = replace(job.data, img_size=img_size or design.input_size,
                   epochs=epochs or job.data.epochs)
    if design.lr is not None:
        data = replace(data, init_lr=float(design.lr))
    if design.randaugment_magnitude is not None:
        data = replace(data, aug_train="randaugment_train",
                       aug_train_params={**data.aug_train_params,
                                         "level": int(design.randaugment_magnitude)})
    return data


def _twin(trial, key: str):
    from optuna.trial import TrialState

    for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if other.number != trial.number and other.user_attrs.get("design_key") == key:
            return other
    return None


def _train(trial, job: ArchJob, design: Design, trial_dir: Path):
    """The proxy training, its lines in the trial's log.txt; stopped (pruned) once hopeless.
    Returns the last epoch's held-out and val macro F1 and the trained model."""
    from compress.checkpoint import load_checkpoint
    from compress.training.checkpointing import BEST_NAME, STATE_NAME
    from compress.training.config import FromDataOptions
    from compress.training.engine import train_from_data_config

    curve: list[float] = []
    trial_dir.mkdir(parents=True, exist_ok=True)
    with open(trial_dir / "log.txt", "a") as log:
        def to_log(line: str) -> None:
            log.write(line + "\n")
            log.flush()

        def after_epoch(row: dict[str, Any]) -> None:
            curve.append(row["held_out_macro_f1"])
            trial.set_user_attr("curve", curve)
            if row["epoch"] < job.section.proxy.epochs:
                _stop_if_hopeless(trial, job, row["epoch"], curve[-1], to_log)

        try:
            result = train_from_data_config(
                {"kind": "kindle", "config": design.config}, proxy_data(job, design),
                trial_dir, FromDataOptions(
                    device=job.device, echo=to_log,
                    train_share=job.section.proxy.train_share, after_epoch=after_epoch,
                    provenance={"command": f"compress arch-search {job.spec_path}, trial "
                                f"{trial.number}"}))
        except Exception as exc:
            trial.set_user_attr("error", first_line(exc))
            raise
    # A finished trial is never resumed (a retried one gets a new folder): its training
    # state and best epoch are dead weight; last.safetensors is the proxy-trained model.
    for name in (BEST_NAME, STATE_NAME):
        (trial_dir / name).unlink(missing_ok=True)
    last = result.history[-1]
    return last["held_out_macro_f1"], last["val_macro_f1"], load_checkpoint(result.path).model


def _stop_if_hopeless(trial, job: ArchJob, epoch: int, f1: float,
                      to_log: Callable[[str], None]) -> None:
    """Optuna's pruners do not take multi-objective studies; so: below prune_below_f1
    from the second epoch on, or prune_margin below the median of the finished trials at
    the same epoch once MEDIAN_AFTER have finished."""
    import optuna
    from optuna.trial import TrialState

    section = job.section
    reason = None
    if section.prune_below_f1 is not None and epoch >= 2 and f1 < section.prune_below_f1:
        reason = f"below prune_below_f1 {section.prune_below_f1}"
    elif section.prune_margin is not None:
        finished = [t.user_attrs["curve"][epoch - 1]
                    for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    if len(t.user_attrs.get("curve", [])) >= epoch and "copy_of" not in t.user_attrs]
        if len(finished) >= MEDIAN_AFTER:
            median = statistics.median(finished)
            if f1 < median - section.prune_margin:
                reason = (f"{section.prune_margin} below the median {median:.4f} of "
                          f"{len(finished)} finished trials")
    if reason:
        line = f"trial {trial.number} pruned after epoch {epoch}: held-out macro F1 {f1:.4f} " \
            f"is {reason}"
        to_log(line)
        trial.set_user_attr("pruned", line)
        raise optuna.TrialPruned(line)


def _measure(job: ArchJob, design: Design, model, trial_dir: Path) -> dict[str, Any]:
    """MACs and parameters at the design's input size; batch-1 latency against the
    reference, interleaved in this process's timing worker."""
    from compress.measure import timing_process
    from compress.measure.machine import usable_cores
    from compress.measure.macs import count_macs, count_params
    from compress.measure.runtime import RuntimeChoice
    from compress.ops.onnx_export import export_onnx

    global _timer
    reference_onnx, reference_size = _reference_onnx(job)
    onnx_path = export_onnx(model, trial_dir / "model.onnx", design.input_size,
                            classes=job.classes)
    if _timer is None:
        _timer = timing_process.TimingWorker()
        atexit.register(_timer.close)  # the worker process ends with this one
    threads = max(1, usable_cores() // job.workers) if job.workers > 1 else None
    comparison, = _timer.run([timing_process.compare(
        reference_onnx, onnx_path, input_size=reference_size, input_size_b=design.input_size,
        warmup=job.section.bench.warmup, runs=job.section.bench.runs)],
        RuntimeChoice("onnxruntime", "cpu", "cpu"), threads)
    return {"macs": count_macs(model, design.input_size), "params": count_params(model),
            "speedup": comparison.ratio, "latency_ms": comparison.b.median_ms,
            "reference_latency_ms": comparison.a.median_ms, "input_size": design.input_size}


def _reference_onnx(job: ArchJob) -> tuple[Path, int]:
    """The reference as ONNX in the search folder, written by each process on its first
    trial (the reference may have changed since an earlier search into the folder), under
    the file's lock: workers sharing the folder write it one at a time, and a worker timing
    against it meanwhile reads one whole file."""
    from compress.ops.onnx_export import export_onnx

    global _reference
    path = job.out_dir / "reference.onnx"
    if _reference is None or _reference[0] != path or not path.is_file():
        model, size = reference_model(job)
        with file_lock(path.with_name(path.name + ".lock")):
            export_onnx(model, path, size, classes=job.classes)
        _reference = (path, size)
    return _reference

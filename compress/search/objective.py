"""One trial: the recipe with the trial's values, run as `compress run` in its own folder
(its lines go to the trial's log.txt), and its two objectives.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from compress.errors import StageFailed, UserError, first_line
from compress.pipeline.runstore import RunStore, StageRecord
from compress.recipe.loading import recipe_from_raw
from compress.recipe.search_space import with_params, with_proxy
from compress.search.job import SearchJob
from compress.stages.base import StageStatus


def _twin(study, number: int, params: dict[str, Any]):
    """A finished trial with exactly these values (another worker may have drawn them)."""
    from optuna.trial import TrialState

    for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if other.number != number and other.params == params:
            return other
    return None


def objective(trial, job: SearchJob, echo: Callable[[str], None]) -> tuple[float, float]:
    """Run one trial; return (macro F1 on the held-out train images, else on val; latency
    fraction or MACs in millions)."""
    params = {name: spec.suggest(trial, name) for name, spec in job.section.params.items()}
    shown = ", ".join(f"{name}={format_value(value)}" for name, value in params.items())
    twin = _twin(trial.study, trial.number, params)
    if twin is not None:  # the same recipe again: take its figures instead of re-running it
        _copy_figures(trial, twin)
        echo(f"trial {trial.number}: {shown}: same values as trial {twin.number}, reused")
        return twin.values
    raw, trial_dir = _trial_recipe(trial, job, params)
    echo(f"trial {trial.number} started: {shown}")
    started = time.perf_counter()
    records = _run_trial(trial, job, raw, trial_dir, echo)
    return _objectives(trial, job, records, (time.perf_counter() - started) / 60, echo)


def _copy_figures(trial, twin) -> None:
    for key, value in twin.user_attrs.items():
        trial.set_user_attr(key, value)
    for key, value in (twin.constraints or {}).items():
        trial.set_constraint(key, value)
    trial.set_user_attr("copy_of", twin.number)


def _trial_recipe(trial, job: SearchJob, params: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """The recipe with the trial's values (and the proxy), and the trial's run folder."""
    from compress.measure.machine import usable_cores

    raw = with_proxy(with_params(job.raw, params), job.section.proxy_epochs)
    if job.workers > 1:  # workers share the cores; each times its models on its own share
        raw.setdefault("bench", {}).setdefault("threads", max(1, usable_cores() // job.workers))
    trial.set_user_attr("recipe", raw)
    trial_dir = job.out_dir / "trials" / f"{job.study_name}-{trial.number:04d}"
    trial.set_user_attr("run_dir", str(trial_dir))
    RunStore(trial_dir).adopt()  # its log.txt lives beside the run's files
    return raw, trial_dir


def _run_trial(trial, job: SearchJob, raw: dict[str, Any], trial_dir: Path,
               echo: Callable[[str], None]) -> list[StageRecord]:
    """`compress run` of the trial's recipe, its lines in the trial's log.txt; a fine-tune
    that ends below prune_below_f1 stops it (pruned)."""
    import optuna

    from compress.pipeline.loop import run_recipe

    threshold = job.section.prune_below_f1
    stage_f1: dict[str, float] = {}

    def after_stage(record: StageRecord) -> None:
        f1 = record.decision_f1
        if f1 is not None:
            stage_f1[f"{record.index}:{record.name}"] = f1
            trial.set_user_attr("stage_f1", stage_f1)
        if threshold is not None and record.name == "finetune" and f1 is not None and \
                f1 < threshold:
            echo(f"trial {trial.number} pruned after stage {record.index}:finetune: "
                 f"{_judged_on(record)} macro F1 {f1:.4f} < {threshold}")
            raise optuna.TrialPruned()

    with open(trial_dir / "log.txt", "a") as log:
        def to_log(line: str) -> None:
            log.write(line + "\n")
            log.flush()

        try:
            recipe = recipe_from_raw(raw, trial_dir / "recipe.yaml")
            return run_recipe(recipe, trial_dir, resume=True, echo=to_log,
                              after_stage=after_stage, tracking_parent=job.tracking_parent)
        except (UserError, StageFailed) as exc:
            trial.set_user_attr("error", first_line(exc))
            raise


def _objectives(trial, job: SearchJob, records: list[StageRecord], minutes: float,
                echo: Callable[[str], None]) -> tuple[float, float]:
    """The final stage's figures, kept with the trial, and its two objective values."""
    final = max((r for r in records if r.status is StageStatus.DONE), key=lambda r: r.index)
    f1 = final.decision_f1
    trial.set_user_attr("figures", {
        "macro_f1": final.macro_f1, "held_out_macro_f1": final.held_out_macro_f1,
        "judged_on": _judged_on(final), "accuracy": final.accuracy, "speedup": final.speedup_vs_input,
        "latency_ms": final.latency_ms, "macs": final.macs, "params": final.params,
        "input_macro_f1": records[0].macro_f1, "input_macs": records[0].macs,
        "minutes": minutes})
    if job.section.min_f1 is not None:  # feasible when <= 0 (Optuna's convention)
        trial.set_constraint("min_f1", job.section.min_f1 - f1)
    second = 1 / final.speedup_vs_input if job.section.minimize == "latency" \
        else final.macs / 1e6
    echo(f"trial {trial.number} done: {_judged_on(final)} macro F1 {f1:.4f}, "
         f"{final.speedup_vs_input:.2f}x "
         f"faster, {final.macs / 1e6:.1f} M MACs, {minutes:.1f} min")
    return f1, second


def _judged_on(record: StageRecord) -> str:
    return "held-out" if record.held_out_macro_f1 is not None else "val"


def format_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

"""`compress search`: Optuna multi-objective search over the values of a recipe.

Each trial is one `compress run` of the recipe with the trial's values, in its own run
folder; its objectives are the final stage's val macro F1 (maximised) and its batch-1
latency as a fraction of the input's, timed interleaved (or its MACs), minimised.
The study lives in an Optuna storage: an SQLite file in the search folder by default, or a
PostgreSQL server that any number of `compress search` processes on any machines share.
Everything a Pareto recipe needs is kept in the storage, so any worker can write them.
"""

from __future__ import annotations

import json
import multiprocessing
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from compress.errors import StageFailed, UserError
from compress.plotting import figure_file
from compress.recipe.loading import read_raw_recipe, recipe_from_raw
from compress.recipe.search_space import SearchSection, with_params, with_proxy

SQLITE_NAME = "study.db"


# A trial whose process died stops beating; after this long it is marked failed and its
# values are tried again once (Optuna's heartbeat, RDB storages).
HEARTBEAT_S, GRACE_S = 30, 120


@dataclass
class SearchJob:
    recipe_path: str
    raw: dict[str, Any]  # the recipe with --set and --data applied
    section: SearchSection
    out_dir: Path
    storage_url: str
    study_name: str
    trials: int  # finished trials the study should hold (all workers together)
    timeout: float | None
    workers: int


def prepare_search(recipe_path: str, trials: int, storage: str | None, study: str | None,
                   workers: int, timeout: float | None, out: str | None,
                   data_root: str | None, overrides: list[str]) -> SearchJob:
    """Validate the recipe, its search block and every value the space can take."""
    path = Path(recipe_path)
    raw = read_raw_recipe(path, overrides, data_root)
    recipe = recipe_from_raw(raw, path)
    if recipe.search is None:
        raise UserError(f"recipe {path}: no search block; add search.params (see "
                        "compress search --help)")
    check_space(raw, recipe.search, path)
    if not Path(recipe.data.root).is_dir():
        raise UserError(f"no data folder at {recipe.data.root}: a search needs val macro F1; "
                        "give --data ROOT")
    out_dir = Path(out) if out else Path("runs") / "search" / path.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(out_dir / SQLITE_NAME).resolve()}"
    job = SearchJob(str(path), raw, recipe.search, out_dir, url, study or path.stem, trials,
                    timeout, workers)
    open_storage(url)  # an unreachable server fails here, before any work
    return job


def check_space(raw: dict[str, Any], section: SearchSection, path: Path) -> None:
    """Every parameter names a recipe value, and its bounds or choices are valid there."""
    for name, spec in section.params.items():
        for value in spec.examples():
            try:
                recipe_from_raw(with_params(raw, {name: value}), path)
            except UserError as exc:
                detail = str(exc).removeprefix(f"recipe {path}: ")
                if "unknown key" in detail or "no item" in detail or "not a mapping" in detail:
                    raise UserError(f"recipe {path}: search.params.{name}: names no recipe "
                                    f"value ({detail})") from None
                raise UserError(f"recipe {path}: search.params.{name}: {value!r} is not a "
                                f"valid value there ({detail})") from None


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def open_storage(url: str):
    """Optuna's RDB storage with heartbeats; a bad or unreachable URL is a user error."""
    import optuna
    import sqlalchemy

    # Heartbeats, metric names and the retry callback are marked experimental; they work.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    connect_args = {"timeout": 60} if url.startswith("sqlite") else \
        {"connect_timeout": 10} if url.startswith("postgres") else {}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs={"connect_args": connect_args},
                heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=1))
        except sqlalchemy.exc.IntegrityError:
            # Two workers creating the tables of a new storage at once: one wins, the
            # other finds them on a second try.
            time.sleep(0.5 + attempt)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else \
                type(exc).__name__
            raise UserError(f"--storage {_redacted(url)}: cannot open it ({reason})") from None
    raise UserError(f"--storage {_redacted(url)}: its tables could not be created")


def _sampler(section: SearchSection, worker: int):
    import optuna

    seed = None if section.seed is None else section.seed + worker
    if section.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def load_study(job: SearchJob, worker: int = 0):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=open_storage(job.storage_url), sampler=_sampler(job.section, worker),
        study_name=job.study_name, directions=["maximize", "minimize"], load_if_exists=True)
    names = ["macro_f1", "latency_fraction" if job.section.minimize == "latency" else "mmacs"]
    if study.metric_names != names:
        if study.metric_names is not None:
            raise UserError(f"study {job.study_name} in {_redacted(job.storage_url)} minimises "
                            f"{study.metric_names[1]}, not {names[1]}: use another --study")
        study.set_metric_names(names)
    return study


def finished_trials(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def run_search(job: SearchJob, echo: Callable[[str], None] = print) -> None:
    """Run trials until the study holds `job.trials` finished ones (or the timeout)."""
    study = load_study(job)
    left = job.trials - len(finished_trials(study))
    if left <= 0:
        echo(f"study {job.study_name} already holds {job.trials} finished trials")
        return
    echo(f"study {job.study_name} in {_redacted(job.storage_url)}: {left} trials to run "
         f"with {job.workers} worker(s); trial folders in {job.out_dir / 'trials'}")
    if job.workers == 1:
        _optimize(job, study, echo)
        return
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker_main, args=(job, worker), daemon=False)
                 for worker in range(job.workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()


def _worker_main(job: SearchJob, worker: int) -> None:
    import torch

    from compress.measure.machine import usable_cores

    torch.set_num_threads(max(1, usable_cores() // job.workers))
    _optimize(job, load_study(job, worker),
              lambda line: print(f"[worker {worker}] {line}", flush=True))


def _optimize(job: SearchJob, study, echo: Callable[[str], None]) -> None:
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    study.optimize(
        lambda trial: _objective(trial, job, echo), n_trials=job.trials,
        timeout=job.timeout, catch=(StageFailed, UserError),
        callbacks=[MaxTrialsCallback(job.trials, states=(TrialState.COMPLETE,
                                                          TrialState.PRUNED)),
                   lambda study, trial: _say_failed(trial, echo)])


def _say_failed(trial, echo: Callable[[str], None]) -> None:
    from optuna.trial import TrialState

    if trial.state == TrialState.FAIL:
        echo(f"trial {trial.number} failed: {trial.user_attrs.get('error', 'see its log.txt')}")


def _twin(study, number: int, params: dict[str, Any]):
    """A finished trial with exactly these values (another worker may have drawn them)."""
    from optuna.trial import TrialState

    for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if other.number != number and other.params == params:
            return other
    return None


def _objective(trial, job: SearchJob, echo: Callable[[str], None]):
    import optuna

    from compress.measure.machine import usable_cores
    from compress.pipeline.loop import run_recipe

    params = {name: spec.suggest(trial, name) for name, spec in job.section.params.items()}
    shown = ", ".join(f"{name}={_fmt(value)}" for name, value in params.items())
    twin = _twin(trial.study, trial.number, params)
    if twin is not None:  # the same recipe again: take its figures instead of re-running it
        for key, value in twin.user_attrs.items():
            trial.set_user_attr(key, value)
        for key, value in (twin.constraints or {}).items():
            trial.set_constraint(key, value)
        trial.set_user_attr("copy_of", twin.number)
        echo(f"trial {trial.number}: {shown}: same values as trial {twin.number}, reused")
        return twin.values
    raw = with_proxy(with_params(job.raw, params), job.section.proxy_epochs)
    if job.workers > 1:  # workers share the cores; each times its models on its own share
        raw.setdefault("bench", {}).setdefault("threads", max(1, usable_cores() // job.workers))
    trial.set_user_attr("recipe", raw)
    trial_dir = job.out_dir / "trials" / f"{job.study_name}-{trial.number:04d}"
    trial.set_user_attr("run_dir", str(trial_dir))
    trial_dir.mkdir(parents=True, exist_ok=True)
    echo(f"trial {trial.number} started: {shown}")
    started = time.perf_counter()
    threshold = job.section.prune_below_f1
    stage_f1: dict[str, float] = {}

    def after_stage(record) -> None:
        if record.macro_f1 is not None:
            stage_f1[f"{record.index}:{record.name}"] = record.macro_f1
            trial.set_user_attr("stage_f1", stage_f1)
        if threshold is not None and record.name == "finetune" and \
                record.macro_f1 is not None and record.macro_f1 < threshold:
            echo(f"trial {trial.number} pruned after stage {record.index}:finetune: val macro "
                 f"F1 {record.macro_f1:.4f} < {threshold}")
            raise optuna.TrialPruned()

    with open(trial_dir / "log.txt", "a") as log:
        def to_log(line: str) -> None:
            log.write(line + "\n")
            log.flush()

        try:
            recipe = recipe_from_raw(raw, trial_dir / "recipe.yaml")
            records = run_recipe(recipe, trial_dir, resume=True, echo=to_log,
                                 after_stage=after_stage)
        except (UserError, StageFailed) as exc:
            trial.set_user_attr("error", str(exc).splitlines()[0])
            raise
    final = max((r for r in records if r.status == "done"), key=lambda r: r.index)
    f1 = final.macro_f1
    trial.set_user_attr("figures", {
        "macro_f1": f1, "accuracy": final.accuracy, "speedup": final.speedup_vs_input,
        "latency_ms": final.latency_ms, "macs": final.macs, "params": final.params,
        "input_macro_f1": records[0].macro_f1, "input_macs": records[0].macs,
        "minutes": (time.perf_counter() - started) / 60})
    if job.section.min_f1 is not None:  # feasible when <= 0 (Optuna's convention)
        trial.set_constraint("min_f1", job.section.min_f1 - f1)
    second = 1 / final.speedup_vs_input if job.section.minimize == "latency" \
        else final.macs / 1e6
    echo(f"trial {trial.number} done: val macro F1 {f1:.4f}, {final.speedup_vs_input:.2f}x "
         f"faster, {final.macs / 1e6:.1f} M MACs, {(time.perf_counter() - started) / 60:.1f} min")
    return f1, second


def write_front(job: SearchJob) -> tuple[list[str], dict[str, Path]]:
    """The Pareto front of the study (feasible trials only, when min_f1 is set)."""
    study = load_study(job)
    front = sorted(study.best_trials, key=lambda t: -t.values[0])
    done = [t for t in finished_trials(study) if t.values is not None]
    out = job.out_dir
    recipe_dir = out / "pareto"
    recipe_dir.mkdir(parents=True, exist_ok=True)
    lines = ["| trial | val macro F1 | speed-up | MACs | params | "
             + " | ".join(job.section.params) + " | recipe |",
             "|" + "---|" * (6 + len(job.section.params))]
    for trial in front:
        figures = trial.user_attrs["figures"]
        recipe_path = recipe_dir / f"{job.study_name}-{trial.number:04d}.yaml"
        _write_recipe(recipe_path, trial, job)
        lines.append(
            f"| {trial.number} | {figures['macro_f1']:.4f} | {figures['speedup']:.2f}x | "
            f"{figures['macs'] / 1e6:.1f} M | {figures['params']:,} | "
            + " | ".join(_fmt(trial.params.get(name)) for name in job.section.params)
            + f" | {recipe_path} |")
    if not front:
        lines.append("(empty: no finished trial" + (f" meets min_f1 {job.section.min_f1})"
                                                    if job.section.min_f1 is not None else ")"))
    (out / "pareto.md").write_text("\n".join(lines) + "\n")
    (out / "search.json").write_text(json.dumps({
        "study": job.study_name, "storage": _redacted(job.storage_url),
        "objectives": ["maximize macro_f1", f"minimize {study.metric_names[1]}"],
        "trials": [{"number": t.number, "state": t.state.name, "values": t.values,
                    "params": t.params, "pareto": t in front,
                    **{k: v for k, v in t.user_attrs.items() if k != "recipe"}}
                   for t in study.get_trials(deepcopy=False)]}, indent=1))
    paths = {"table": out / "pareto.md", "json": out / "search.json",
             "plot": _plot_front(out / "pareto.png", done, front, job.section.minimize),
             "recipes": recipe_dir}
    return lines, paths


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _write_recipe(path: Path, trial, job: SearchJob) -> None:
    figures = trial.user_attrs["figures"]
    header = (f"# compress search {job.recipe_path}, study {job.study_name}, trial "
              f"{trial.number} (Pareto front): val macro F1 {figures['macro_f1']:.4f}, "
              f"{figures['speedup']:.2f}x faster, {figures['macs'] / 1e6:.1f} M MACs\n"
              + "".join(f"#   {name}: {value}\n" for name, value in trial.params.items()))
    if job.section.proxy_epochs is not None:
        header += (f"# fine-tuning was capped at {job.section.proxy_epochs} epochs (proxy); "
                   "raise the epochs for the full result\n")
    path.write_text(header + yaml.safe_dump(trial.user_attrs["recipe"], sort_keys=False))


def _plot_front(path: Path, done: list, front: list, minimize: str) -> Path:
    def x(trial) -> float:
        figures = trial.user_attrs["figures"]
        return figures["speedup"] if minimize == "latency" else figures["macs"] / 1e6

    with figure_file(path) as ax:
        ax.scatter([x(t) for t in done], [t.values[0] for t in done], c="0.6", s=18,
                   label="trials")
        ax.scatter([x(t) for t in front], [t.values[0] for t in front], c="tab:red", s=30,
                   label="Pareto front")
        for trial in front:
            ax.annotate(str(trial.number), (x(trial), trial.values[0]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("batch-1 speed-up over the input (interleaved)" if minimize == "latency"
                      else "MACs (millions)")
        ax.set_ylabel("val macro F1")
        ax.grid(alpha=0.3)
        ax.legend()
    return path

"""The study: its sampler and metric names, and the workers that run trials until it holds
enough of them.
"""

from __future__ import annotations

import multiprocessing
import queue
from typing import Any, Callable

from compress.errors import StageFailed, UserError
from compress.search.objective import objective as recipe_objective
from compress.search.storage import open_storage, redacted

# Names of the second objective in the study, by the search's `minimize`.
METRIC_NAMES = {"latency": "latency_fraction", "macs": "mmacs", "params": "mparams"}

# A job is a recipe search (compress.search.job.SearchJob) or an architecture search
# (compress.search.arch_job.ArchJob): both give storage_url, study_name, trials, timeout,
# workers, out_dir, params (name -> ParamSpec) and section (minimize, sampler, seed).
Job = Any
Objective = Callable[[Any, Job, Callable[[str], None]], tuple[float, float]]


def run_search(job: Job, echo: Callable[[str], None] = print,
               objective: Objective = recipe_objective) -> None:
    """Run trials until the study holds `job.trials` finished ones (or the timeout);
    `objective(trial, job, echo)` runs one trial."""
    study = load_study(job)
    left = job.trials - len(finished_trials(study))
    if left <= 0:
        echo(f"study {job.study_name} already holds {job.trials} finished trials")
        return
    echo(f"study {job.study_name} in {redacted(job.storage_url)}: {left} trials to run "
         f"with {job.workers} worker(s); trial folders in {job.out_dir / 'trials'}")
    if job.workers == 1:
        _optimize(job, study, echo, objective)
        return
    context = multiprocessing.get_context("spawn")
    lines = context.Queue()
    processes = [context.Process(target=_worker_main, args=(job, worker, objective, lines),
                                 daemon=False)
                 for worker in range(job.workers)]
    for process in processes:
        process.start()
    _relay(lines, processes, echo)
    for process in processes:
        process.join()


def _relay(lines: Any, processes: list, echo: Callable[[str], None]) -> None:
    """Hand the workers' lines to `echo` in this process (a callback cannot cross into a
    spawned one) until every worker has ended and its lines are read: a worker's queue is
    flushed before its process ends."""
    while True:
        running = any(process.is_alive() for process in processes)
        try:
            echo(lines.get(timeout=0.2))
        except queue.Empty:
            if not running:
                return


def _worker_main(job: Job, worker: int, objective: Objective, lines: Any) -> None:
    import torch

    from compress.measure.machine import usable_cores

    torch.set_num_threads(max(1, usable_cores() // job.workers))  # this process's own
    _optimize(job, load_study(job, worker), lambda line: lines.put(f"[worker {worker}] {line}"),
              objective)


def _optimize(job: Job, study, echo: Callable[[str], None], objective: Objective) -> None:
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    study.optimize(
        lambda trial: objective(trial, job, echo), n_trials=job.trials,
        timeout=job.timeout, catch=(StageFailed, UserError),
        callbacks=[MaxTrialsCallback(job.trials, states=(TrialState.COMPLETE,
                                                          TrialState.PRUNED)),
                   lambda study, trial: _say_failed(trial, echo)])


def _say_failed(trial, echo: Callable[[str], None]) -> None:
    from optuna.trial import TrialState

    if trial.state == TrialState.FAIL:
        echo(f"trial {trial.number} failed: {trial.user_attrs.get('error', 'see its log.txt')}")


def _sampler(section, worker: int):
    import optuna

    seed = None if section.seed is None else section.seed + worker
    if section.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def load_study(job: Job, worker: int = 0):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=open_storage(job.storage_url), sampler=_sampler(job.section, worker),
        study_name=job.study_name, directions=["maximize", "minimize"], load_if_exists=True)
    names = ["macro_f1", METRIC_NAMES[job.section.minimize]]
    if study.metric_names != names:
        if study.metric_names is not None:
            raise UserError(f"study {job.study_name} in {redacted(job.storage_url)} minimises "
                            f"{study.metric_names[1]}, not {names[1]}: use another --study")
        study.set_metric_names(names)
    _check_same_space(study, job)
    return study


def _check_same_space(study, job: Job) -> None:
    """A study continued with an edited space would fail in Optuna at the first draw."""
    from optuna.distributions import check_distribution_compatibility

    for trial in study.get_trials(deepcopy=False):
        for name, spec in job.params.items():
            if name not in trial.distributions:
                continue
            try:
                check_distribution_compatibility(trial.distributions[name], spec.distribution())
            except ValueError:
                raise UserError(f"study {job.study_name} in {redacted(job.storage_url)} drew "
                                f"search.params.{name} from another kind of range; use another "
                                "--study (or --out) for the edited space") from None


def finished_trials(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))

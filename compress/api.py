"""`compress.run`: the pipeline from Python (a notebook, a script), as `compress run` runs it;
`compress.time_files_in_turn`: ONNX files timed the way a run times its stages;
`compress.arch_search_trials` and `train_arch_design`: an architecture search's designs
trained again, longer or with another proxy.

Errors a user can cause raise `UserError`, a stage whose result fails its check raises
`StageFailed`: the caller decides, where the CLI turns them into exit codes 2 and 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.errors import UserError
from compress.measure.latency import InTurn
from compress.pipeline.loop import run_recipe
from compress.pipeline.runstore import StageRecord
from compress.recipe.loading import load_recipe, recipe_from_raw, with_overrides
from compress.recipe.schema import Recipe

if TYPE_CHECKING:
    from compress.training.engine import TrainResult


def run(recipe: str | Path | Recipe, out: str | Path, data: str | Path | None = None,
        overrides: Iterable[str] = (), resume: bool = False,
        echo: Callable[[str], None] = print) -> list[StageRecord]:
    """Run `recipe` (a YAML path or a loaded `Recipe`) into the run folder `out`; return one
    frozen record per stage, the input first.

    `data` replaces the recipe's data root and must be a folder (a mistyped path is an
    error, not "no data"); a recipe whose own `data.root` does not exist runs the no-data
    path: image-dependent steps are skipped and their figures are None. `overrides` are
    `--set` assignments such as "stages.1.epochs=1"; `echo` receives each progress line.
    """
    if data is not None and not Path(data).is_dir():
        raise UserError(f"--data {data}: " + ("is a file, not a folder" if Path(data).exists()
                                              else "no such folder"))
    if isinstance(recipe, Recipe):
        recipe = _revalidated(recipe, list(overrides), data)
    else:
        recipe = load_recipe(recipe, list(overrides), None if data is None else str(data))
    return run_recipe(recipe, out, resume, echo=echo)


def _revalidated(recipe: Recipe, overrides: list[str], data: str | Path | None) -> Recipe:
    """A loaded recipe with overrides applied, checked again as a file would be: a Recipe
    built or edited in Python skipped the stage and checkpoint checks of load_recipe."""
    raw = with_overrides(recipe.model_dump(mode="json"), overrides, data)
    return recipe_from_raw(raw, "(in memory)")


def time_files_in_turn(paths: Sequence[str | Path], runtimes: Sequence[str] | None = None, *,
                       input_size: int, batch: int = 1, warmup: int = 10, runs: int = 100,
                       threads: int | None = None) -> InTurn:
    """ONNX files timed in turn block by block (as `time_in_turn`), in a process of their own
    that only runs them, as a run times its stages: in a process that has also run torch,
    exports and ONNX Runtime sessions, small models time slower
    (compress.measure.timing_process).
    `runtimes` gives each file's runtime (onnxruntime or openvino; one file may appear in
    both), else all run in ONNX Runtime, on the CPU."""
    from compress.measure.runtime import RuntimeChoice
    from compress.measure.timing_process import TimingWorker, in_turn

    worker = TimingWorker()
    try:
        job = in_turn(list(paths), list(runtimes) if runtimes is not None else None,
                      input_size=input_size, batch=batch, warmup=warmup, runs=runs)
        return worker.run([job], RuntimeChoice("onnxruntime", "cpu", "cpu"), threads)[0]
    finally:
        worker.close()


def arch_search_trials(search_file: str | Path, out: str | Path,
                       data: str | Path | None = None) -> tuple[Any, list]:
    """The job of the architecture search in the folder `out` (its search file and data read
    as `compress arch-search` reads them; `data` overrides DATA_PATH) and its finished
    trials, for a script that trains the search's designs again (`train_arch_design`)."""
    from optuna.trial import TrialState

    from compress.search.arch_job import prepare_arch_search
    from compress.search.job import StudyOptions
    from compress.search.study import load_study

    job = prepare_arch_search(str(search_file), StudyOptions(trials=1, out=str(out)),
                              None if data is None else str(data), echo=lambda line: None)
    return job, load_study(job).get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def train_arch_design(job: Any, trial: Any, out_dir: str | Path, *,
                      proxy: dict[str, float] | None = None, epochs: int | None = None,
                      echo: Callable[[str], None] | None = None) -> TrainResult:
    """Train the design of a trial of `arch_search_trials` again into `out_dir` (resumed
    there when interrupted): with `proxy` (epochs, train_share, image_scale: the search
    file's proxy keys) as a search trial trains, else fully, for the data YAML's epochs or
    `epochs`."""
    from dataclasses import replace

    from compress.search.arch_front import trial_design
    from compress.search.arch_job import Proxy
    from compress.search.arch_trial import full_data, proxy_data
    from compress.training.config import FromDataOptions
    from compress.training.engine import train_from_data_config

    design = trial_design(trial)
    if proxy is None:
        data, share = full_data(job, design, epochs=epochs), 1.0
    else:
        sized = replace(job, section=job.section.model_copy(update={"proxy": Proxy(**proxy)}))
        data, share = proxy_data(sized, design), sized.section.proxy.train_share
    return train_from_data_config({"kind": "kindle", "config": design.config}, data, out_dir,
                                  FromDataOptions(train_share=share, echo=echo))

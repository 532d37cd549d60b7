"""A validated search: the recipe, its search block, where the study lives; every value
the space can take is checked before any trial runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress.errors import UserError
from compress.recipe.loading import read_raw_recipe, recipe_from_raw
from compress.recipe.search_space import ParamSpec, SearchSection, with_params
from compress.search.storage import open_storage
from compress.tracking import Tracker

SQLITE_NAME = "study.db"


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
    tracking_parent: str | None = None  # the study's MLflow run, each trial a child of it

    @property
    def params(self) -> dict[str, ParamSpec]:
        return self.section.params


@dataclass(frozen=True)
class StudyOptions:
    """Where a study lives and how many trials it runs: what `search` and `arch-search`
    share."""

    trials: int  # finished trials the study should hold (all workers together)
    storage: str | None = None  # an Optuna storage URL; default: SQLite in the search folder
    study: str | None = None  # the study's name; default: the search file's name
    workers: int = 1
    timeout: float | None = None  # no trial starts after this many seconds
    out: str | None = None  # the search folder


def study_folder(options: StudyOptions, path: Path, kind: str) -> tuple[Path, str]:
    """The search folder (created) and the storage URL; `kind` names the default folder
    under runs/."""
    out_dir = Path(options.out) if options.out else Path("runs") / kind / path.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir, options.storage or f"sqlite:///{(out_dir / SQLITE_NAME).resolve()}"


def prepare_search(recipe_path: str, study: StudyOptions, data_root: str | None,
                   overrides: list[str]) -> SearchJob:
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
    out_dir, url = study_folder(study, path, "search")
    job = SearchJob(str(path), raw, recipe.search, out_dir, url, study.study or path.stem,
                    study.trials, study.timeout, study.workers)
    open_storage(url)  # an unreachable server fails here, before any work
    return job


def start_search_tracking(job: SearchJob, echo) -> Tracker:
    """Where the recipe is tracked: the study's MLflow run (its space and search settings as
    parameters), every trial logging into the same store as a child of it."""
    from compress.pipeline.loop import run_tracker

    tracker = run_tracker(recipe_from_raw(job.raw, Path(job.recipe_path)), job.out_dir, echo)
    if not tracker.on:
        return tracker
    job.raw.setdefault("tracking", {})["uri"] = tracker.uri
    tracker.start(f"search {job.study_name}", {"search": job.raw.get("search", {}),
                                               "trials": job.trials},
                  {"compress.study": job.study_name,
                   "compress.search_folder": str(job.out_dir.resolve())},
                  artifact_root=job.out_dir.resolve().parent / "mlartifacts")
    job.tracking_parent = tracker.run_id
    return tracker


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

"""Experiment tracking in MLflow (the `mlflow` extra): a run's recipe, per-stage figures,
device fingerprint and report files, a fine-tune's epochs, a search's trials as child runs
of the study, so that runs made over weeks compare side by side in the MLflow UI.

Off unless asked (`--track mlflow`, or the recipe's `tracking.to: mlflow`). The default
store is embedded, nothing to start: SQLite in RUNS/mlflow.db with the files in
RUNS/mlartifacts, RUNS being the folder that holds the run folder; `mlflow ui
--backend-store-uri sqlite:///RUNS/mlflow.db` shows it. A tracking failure never stops the
work it records: it says so in one warning line and the rest goes untracked.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compress.errors import UserError, first_line

MLFLOW_HINT = "pip install -e '.[mlflow]'"
# The figures of a stage record logged per stage (step = the stage's index), so the UI's
# latest value is the final stage's and each metric's history is the run's path.
STAGE_METRICS = ("params", "macs", "latency_ms", "speedup_vs_input", "macro_f1", "accuracy",
                 "held_out_macro_f1", "score")

EPOCH_METRICS = ("train_loss", "val_macro_f1", "val_accuracy", "held_out_macro_f1", "lr")


def mlflow_problem() -> str | None:
    """None where MLflow imports, else why not and how to install it."""
    try:
        import mlflow  # noqa: F401
    except ImportError as exc:
        return f"MLflow is not installed ({MLFLOW_HINT}): {exc}"
    return None


def default_store_uri(runs_folder: str | Path) -> str:
    return "sqlite:///" + str(Path(runs_folder).resolve() / "mlflow.db")


def open_tracker(asked_by: str | None, uri: str | None, runs_folder: str | Path,
                 experiment: str = "compress", warn: Callable[[str], None] = print) -> Tracker:
    """Off (a tracker that logs nothing) where `asked_by` is None; else a tracker over `uri`
    or the default store beside `runs_folder`. MLflow not installed is an error naming
    `asked_by`, the option or key that asked for it."""
    if asked_by is None:
        return Tracker()
    problem = mlflow_problem()
    if problem:
        raise UserError(f"{asked_by}: {problem}")
    return Tracker(uri or default_store_uri(runs_folder), experiment, warn)


@dataclass
class Tracker:
    """One tracked run; every method is safe to call when tracking is off or has failed."""

    uri: str | None = None  # None: off
    experiment: str = "compress"
    warn: Callable[[str], None] = print
    run_id: str | None = None
    _client: Any = field(default=None, repr=False)

    @property
    def on(self) -> bool:
        return self.uri is not None

    def start(self, name: str, params: dict[str, Any], tags: dict[str, str] | None = None,
              parent_run_id: str | None = None, artifact_root: Path | None = None) -> None:
        """A new MLflow run named `name` (a child of `parent_run_id`), with `params`
        flattened to dotted keys; `artifact_root` where the experiment's files go when it
        is created here."""
        def start_run() -> None:
            from mlflow.entities import Param

            client = self._open()
            experiment = client.get_experiment_by_name(self.experiment)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(
                self.experiment, artifact_location=None if artifact_root is None
                else Path(artifact_root).resolve().as_uri())
            run_tags = dict(tags or {})
            if parent_run_id:
                run_tags["mlflow.parentRunId"] = parent_run_id
            self.run_id = client.create_run(experiment_id, run_name=name,
                                            tags=run_tags).info.run_id
            flat = [Param(key, str(value)[:6000]) for key, value in _flatten(params).items()]
            for start in range(0, len(flat), 100):  # MLflow takes 100 params per batch
                client.log_batch(self.run_id, params=flat[start:start + 100])

        self._guarded(start_run)

    def metrics(self, values: dict[str, float | None], step: int = 0) -> None:
        def log() -> None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self._client.log_batch(self.run_id, metrics=[
                Metric(key, float(value), now, step) for key, value in values.items()
                if value is not None])

        self._guarded(log, needs_run=True)

    def stage(self, record: Any) -> None:
        """A stage record's figures at step = its index."""
        self.metrics({key: getattr(record, key) for key in STAGE_METRICS}, record.index)

    def epochs(self, history_json: str | Path) -> None:
        """A training's history.json: each epoch's loss, F1 and learning rate at step = its
        number."""
        def log() -> None:
            for entry in json.loads(Path(history_json).read_text()):
                self.metrics({key: entry.get(key) for key in EPOCH_METRICS}, entry["epoch"])

        self._guarded(log, needs_run=True)

    def tags(self, values: dict[str, Any]) -> None:
        def log() -> None:
            for key, value in values.items():
                self._client.set_tag(self.run_id, key, value if isinstance(value, str)
                                     else json.dumps(value))

        self._guarded(log, needs_run=True)

    def files(self, paths: Iterable[str | Path], folder: str | None = None) -> None:
        def log() -> None:
            for path in paths:
                if Path(path).is_file():
                    self._client.log_artifact(self.run_id, str(path), folder)

        self._guarded(log, needs_run=True)

    def finish(self, failed: bool = False) -> None:
        self._guarded(lambda: self._client.set_terminated(
            self.run_id, "FAILED" if failed else "FINISHED"), needs_run=True)

    def _open(self):
        if self._client is None:
            problem = mlflow_problem()
            if problem:
                raise UserError(problem)
            logging.getLogger("mlflow").setLevel(logging.WARNING)  # no "creating tables" lines
            logging.getLogger("alembic").setLevel(logging.WARNING)
            from mlflow.tracking import MlflowClient

            if self.uri.startswith("sqlite:///"):
                Path(self.uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def _guarded(self, action: Callable[[], None], needs_run: bool = False) -> None:
        if not self.on or (needs_run and self.run_id is None):
            return
        try:
            action()
        except Exception as error:  # tracking records the work; it never stops it
            self.warn(f"warning: MLflow tracking at {self.uri} failed ({type(error).__name__}: "
                      f"{first_line(error)}); the rest of this run is not tracked")
            self.uri, self.run_id = None, None


def _flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists as dotted keys (stages.0.prune.ratio)."""
    if isinstance(values, dict):
        items = values.items()
    elif isinstance(values, list):
        items = enumerate(values)
    else:
        return {prefix: values}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat |= _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return flat

"""MLflow tracking (the `mlflow` extra): a run and a fine-tune logged to a temporary store and
read back through MLflow's API; a store that fails costs one warning line, never the run;
asking without MLflow installed is one error line."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import assert_user_error, run_cli, write_tiny_recipe

from compress.tracking import mlflow_problem

needs_mlflow = pytest.mark.skipif(mlflow_problem() is not None,
                                  reason=f"{mlflow_problem()}; tracking is untested here")


def _client(store_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store_uri)


def _runs(store_uri: str, experiment: str = "compress") -> list:
    client = _client(store_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment} in {store_uri}"
    return client.search_runs([found.experiment_id])


@needs_mlflow
@pytest.mark.slow
def test_a_tracked_run_reads_back_from_mlflow(tmp_path, tiny_checkpoint, tiny_data):
    runs = tmp_path / "runs"
    recipe = write_tiny_recipe(tmp_path / "r.yaml", tiny_checkpoint, tiny_data,
                               [{"prune": {"ratio": 0.25}}, {"export": {}}])
    code, output = run_cli(["run", recipe, "--out", runs / "smoke", "--track", "mlflow"])
    assert code == 0, output
    assert "warning: MLflow" not in output
    store = f"sqlite:///{runs / 'mlflow.db'}"  # the default: beside the run folder
    (run,) = _runs(store)
    assert run.info.run_name == "smoke" and run.info.status == "FINISHED"
    assert run.data.params["stages.0.prune.ratio"] == "0.25"
    assert run.data.params["checkpoint"] == str(tiny_checkpoint)
    report = json.loads((runs / "smoke" / "report.json").read_text())
    client = _client(store)
    for key in ("macro_f1", "latency_ms", "speedup_vs_input", "params", "macs", "score"):
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [0, 1, 2]
        assert {m.step: m.value for m in history} == pytest.approx(
            {stage["index"]: stage[key] for stage in report["stages"]})
    assert run.data.tags["compress.device.cpu"] == report["device"]["cpu"]
    logged = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"report.json", "report.md", "report.html", "recipe.yaml"} <= logged
    assert (runs / "mlartifacts").is_dir()


@needs_mlflow
def test_a_failing_store_costs_one_warning_line_not_the_run(tmp_path, tiny_checkpoint,
                                                           tiny_data):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    recipe = write_tiny_recipe(tmp_path / "r.yaml", tiny_checkpoint, tiny_data, [{"export": {}}])
    code, output = run_cli(["run", recipe, "--out", tmp_path / "run", "--track", "mlflow",
                            "--tracking-uri", f"sqlite:///{blocker}/mlflow.db"])
    assert code == 0, output
    warnings = [line for line in output.splitlines() if line.startswith("warning: MLflow")]
    assert len(warnings) == 1 and "not tracked" in warnings[0], output
    assert len(json.loads((tmp_path / "run" / "report.json").read_text())["stages"]) == 2


@needs_mlflow
def test_a_run_started_untracked_resumes_tracked(tmp_path, tiny_checkpoint, tiny_data,
                                                 monkeypatch):
    from compress.stages.export import Export

    def interrupted(self, model, ctx):
        raise KeyboardInterrupt

    recipe = write_tiny_recipe(tmp_path / "r.yaml", tiny_checkpoint, tiny_data,
                               [{"prune": {"ratio": 0.25}}, {"export": {}}])
    monkeypatch.setattr(Export, "apply", interrupted)
    assert run_cli(["run", recipe, "--out", tmp_path / "runs" / "r"])[0] == 130
    monkeypatch.undo()
    code, output = run_cli(["run", recipe, "--out", tmp_path / "runs" / "r", "--resume",
                            "--track", "mlflow"])
    assert code == 0, output
    store = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    (run,) = _runs(store)
    steps = {m.step for m in _client(store).get_metric_history(run.info.run_id, "params")}
    assert steps == {0, 1, 2}  # the stages of before the interruption too


@needs_mlflow
def test_a_tracked_finetune_logs_each_epoch(tmp_path, tiny_checkpoint, tiny_data):
    out = tmp_path / "tuned"
    store = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    code, output = run_cli(["finetune", tiny_checkpoint, "--data", tiny_data, "--epochs", "2",
                            "--out", out, "--batch-size", "8", "--track", "mlflow",
                            "--tracking-uri", store])
    assert code == 0, output
    (run,) = _runs(store)
    assert run.info.run_name == "tuned" and run.data.params["epochs"] == "2"
    history = _client(store).get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == [1, 2]
    assert run.data.metrics["val_macro_f1"] == pytest.approx(
        json.loads((out / "finetune.json").read_text())["val_macro_f1"])


def test_tracking_without_mlflow_is_one_error_line(tmp_path, tiny_checkpoint, tiny_data,
                                                   monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as on a machine without the extra
    recipe = write_tiny_recipe(tmp_path / "r.yaml", tiny_checkpoint, tiny_data, [{"export": {}}])
    assert_user_error(["run", recipe, "--out", tmp_path / "run", "--track", "mlflow"],
                      "MLflow is not installed", "pip install -e '.[mlflow]'")
    assert not (tmp_path / "run").exists()
    assert_user_error(["finetune", tiny_checkpoint, "--data", tiny_data, "--out",
                       tmp_path / "ft", "--track", "mlflow"], "MLflow is not installed")
    assert not (tmp_path / "ft").exists()
    code, output = run_cli(["run", recipe, "--out", tmp_path / "run"])  # untracked: as before
    assert code == 0, output

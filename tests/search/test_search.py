"""`compress search`: a real Optuna study over a tiny recipe, its Pareto recipes, a shared
PostgreSQL study between two processes, and bad input."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY_CLASSES, assert_user_error, run_cli

from compress.checkpoint import Checkpoint, save_checkpoint
from compress.errors import UserError
from compress.models import build_model

# Set by .ci/run once it has started a throwaway PostgreSQL server.
POSTGRES_URL = os.environ.get("COMPRESS_TEST_POSTGRES_URL")


@pytest.fixture()
def search_recipe(tmp_path, tiny_model_spec, tiny_data) -> Path:
    checkpoint = save_checkpoint(tmp_path / "tiny.safetensors", Checkpoint(
        build_model(tiny_model_spec).eval(), tiny_model_spec, TINY_CLASSES, 32))
    recipe = {
        "checkpoint": str(checkpoint),
        "data": {"root": str(tiny_data), "batch_size": 8, "num_workers": 0},
        "bench": {"batch_sizes": [1], "warmup": 0, "runs": 5, "compare_runtimes": False},
        "stages": [
            {"prune": {"target_macs": 0.6}},
            {"finetune": {"epochs": 3, "lr": 0.05}},
        ],
        "search": {
            "sampler": "tpe", "seed": 3, "proxy_epochs": 1,
            "params": {
                "stages.0.target_macs": {"low": 0.3, "high": 0.9},
                "stages.0.importance": {"choices": ["l1", "l2"]},
                "stages.1.lr": {"low": 0.001, "high": 0.1, "log": True},
            },
        },
    }
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.mark.slow
def test_a_sqlite_search_writes_a_front_whose_recipes_run(tmp_path, search_recipe):
    import optuna

    out = tmp_path / "search"
    code, output = run_cli(["search", search_recipe, "--trials", 3, "--out", out])
    assert code == 0, output
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'study.db'}")
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    for trial in trials:
        assert 0.3 <= trial.params["stages.0.target_macs"] <= 0.9
        run_dir = Path(trial.user_attrs["run_dir"])
        report = json.loads((run_dir / "report.json").read_text())
        final = report["stages"][-1]
        assert trial.values == [pytest.approx(final["macro_f1"]),
                                pytest.approx(1 / final["speedup_vs_input"])]
        # the proxy capped the fine-tuning at one epoch
        history = json.loads((run_dir / "stages/02-finetune/train/history.json").read_text())
        assert len(history) == 1
        # the trial's log holds every line of its run, the fine-tune's epoch line included
        log = (run_dir / "log.txt").read_text()
        assert "epoch   1/1" in log and "2:finetune" in log
    # The front: no trial on it is dominated by another finished trial.
    front = study.best_trials
    assert front
    for a in front:
        assert not any(b.values[0] >= a.values[0] and b.values[1] <= a.values[1]
                       and b.values != a.values for b in trials)
    table = (out / "pareto.md").read_text()
    assert all(f"| {t.number} |" in table for t in front)
    assert (out / "pareto.png").stat().st_size > 1000
    recipes = sorted((out / "pareto").glob("*.yaml"))
    assert len(recipes) == len(front)
    # A front recipe is a plain recipe that reproduces its trial.
    chosen = yaml.safe_load(recipes[0].read_text())
    assert "search" not in chosen
    number = int(recipes[0].stem.rsplit("-", 1)[1])
    trial = next(t for t in trials if t.number == number)
    assert chosen["stages"][0]["prune"]["target_macs"] == trial.params["stages.0.target_macs"]
    code, output = run_cli(["run", recipes[0], "--out", tmp_path / "rerun"])
    assert code == 0, output
    rerun = json.loads((tmp_path / "rerun/report.json").read_text())["stages"][-1]
    assert rerun["macro_f1"] == pytest.approx(trial.values[0])
    assert rerun["macs"] == trial.user_attrs["figures"]["macs"]

    # A rerun resumes the study: it already holds 3 finished trials.
    code, output = run_cli(["search", search_recipe, "--trials", 3, "--out", out])
    assert code == 0 and "already holds 3 finished trials" in output, output
    assert len(optuna.load_study(study_name="search",
                                 storage=f"sqlite:///{out / 'study.db'}").trials) == 3


def test_hopeless_trials_are_pruned_on_their_fine_tuning_f1(tmp_path, search_recipe):
    import optuna

    raw = yaml.safe_load(search_recipe.read_text())
    # An untrained tiny model (lr ~0) stays near chance: every trial stops after fine-tuning.
    raw["stages"][1]["finetune"]["lr"] = 1e-9
    raw["search"]["params"] = {"stages.0.target_macs": {"low": 0.3, "high": 0.9}}
    raw["search"]["prune_below_f1"] = 0.99
    search_recipe.write_text(yaml.safe_dump(raw))
    out = tmp_path / "search"
    code, output = run_cli(["search", search_recipe, "--trials", 2, "--out", out])
    assert code == 0, output
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    assert "pruned after stage 2:finetune" in output


def test_nsga2_on_macs_with_an_f1_constraint(tmp_path, search_recipe):
    import optuna

    raw = yaml.safe_load(search_recipe.read_text())
    raw["search"] |= {"sampler": "nsga2", "min_f1": 0.99}
    search_recipe.write_text(yaml.safe_dump(raw))
    out = tmp_path / "search"
    code, output = run_cli(["search", search_recipe, "--trials", 2, "--out", out,
                            "--minimize", "macs"])
    assert code == 0, output
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'study.db'}")
    assert study.metric_names == ["macro_f1", "mmacs"]
    for trial in study.trials:
        figures = trial.user_attrs["figures"]
        assert trial.values[1] == pytest.approx(figures["macs"] / 1e6)
        assert trial.constraints == {"min_f1": pytest.approx(0.99 - figures["macro_f1"])}
    # Only trials that meet min_f1 may be on the front.
    assert all(t.values[0] >= 0.99 for t in study.best_trials)


@pytest.mark.slow
@pytest.mark.processes
def test_workers_run_trials_in_parallel_processes(tmp_path, search_recipe):
    import optuna

    out = tmp_path / "search"
    done = subprocess.run([sys.executable, "-m", "compress", "search", str(search_recipe),
                           "--trials", "2", "--workers", "2", "--out", str(out)], cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[worker 0]" in done.stdout and "[worker 1]" in done.stdout
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'study.db'}")
    finished = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(finished) >= 2
    assert len({t.user_attrs["run_dir"] for t in finished}) == len(finished)


@pytest.mark.parametrize("edit, fragments", [
    ({"params": {}}, ["search space is empty"]),
    ({"params": {"stages.1.epochz": {"low": 1, "high": 3}}},
     ["search.params.stages.1.epochz", "names no recipe value"]),
    ({"params": {"stages.7.lr": {"low": 0.1, "high": 0.2}}},
     ["search.params.stages.7.lr", "names no recipe value"]),
    ({"params": {"stages.0.importance": {"choices": ["l3"]}}},
     ["search.params.stages.0.importance", "'l3' is not a valid value"]),
    ({"params": {"stages.1.lr": {"low": 0.2, "high": 0.1}}}, ["low must be below high"]),
])
def test_bad_search_spaces_fail_with_one_line(tmp_path, search_recipe, edit, fragments):
    raw = yaml.safe_load(search_recipe.read_text())
    raw["search"].update(edit)
    search_recipe.write_text(yaml.safe_dump(raw))
    assert_user_error(["search", search_recipe, "--trials", 1, "--out", tmp_path / "s"],
                      *fragments)
    assert not (tmp_path / "s" / "trials").exists()


def test_a_recipe_without_a_search_block_or_an_unreachable_storage_fail(tmp_path,
                                                                         search_recipe):
    assert_user_error(["search", search_recipe, "--trials", 1, "--out", tmp_path / "s",
                       "--storage", "postgresql://nobody:secret@127.0.0.1:1/nothing"],
                      "--storage postgresql://nobody:***@127.0.0.1:1/nothing", "cannot open")
    assert_user_error(["search", search_recipe, "--trials", 1, "--out", tmp_path / "s",
                       "--storage", "nosuchdb://x"], "--storage", "cannot open")
    raw = yaml.safe_load(search_recipe.read_text())
    del raw["search"]
    search_recipe.write_text(yaml.safe_dump(raw))
    assert_user_error(["search", search_recipe, "--trials", 1], "no search block")


def _postgres_url() -> str:
    if not POSTGRES_URL:
        pytest.skip("no PostgreSQL server: set COMPRESS_TEST_POSTGRES_URL (.ci/run starts one)")
    import sqlalchemy

    try:
        sqlalchemy.create_engine(POSTGRES_URL).connect().close()
    except Exception as exc:  # noqa: BLE001 - any failure means there is no usable server
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}")
    return POSTGRES_URL


@pytest.mark.slow
@pytest.mark.processes
def test_two_processes_share_one_postgres_study(tmp_path, search_recipe):
    import optuna

    url = _postgres_url()
    study_name = f"two-workers-{os.getpid()}-{tmp_path.name}"
    command = [sys.executable, "-m", "compress", "search", str(search_recipe), "--trials", "4",
               "--storage", url, "--study", study_name]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen(command + ["--out", str(tmp_path / f"worker{i}")], env=env,
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for i in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = optuna.load_study(study_name=study_name, storage=url)
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) >= 4  # each trial once (a worker may overshoot)
    finished = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(finished) >= 4
    # Both workers ran trials of this one study, each in its own folder.
    by_worker = {i: [t for t in finished if f"worker{i}" in t.user_attrs["run_dir"]]
                 for i in range(2)}
    assert all(by_worker.values()), outputs
    # No trial ran twice: distinct run folders, and no values drawn twice were re-run.
    run_dirs = [t.user_attrs["run_dir"] for t in finished if "copy_of" not in t.user_attrs]
    assert len(run_dirs) == len(set(run_dirs))
    optuna.delete_study(study_name=study_name, storage=url)


def test_a_layer_name_with_dots_is_one_key_in_brackets():
    from compress.recipe.search_space import with_params

    raw = {"checkpoint": "c", "stages": [{"decompose": {"ranks": "map"}}],
           "search": {"params": {}}}
    result = with_params(raw, {"stages.0.rank_map[model.0.0]": 8, "seed": 3})
    assert result == {"checkpoint": "c", "seed": 3,
                      "stages": [{"decompose": {"ranks": "map", "rank_map": {"model.0.0": 8}}}]}
    assert raw["stages"][0]["decompose"] == {"ranks": "map"}  # the input is left as it was


def test_the_shipped_search_recipe_is_valid(monkeypatch):
    """recipes/mnv3_search.yaml: every value its space can take makes a valid recipe."""
    from compress.recipe.loading import read_raw_recipe, recipe_from_raw
    from compress.search.job import check_space

    monkeypatch.chdir(REPO)
    path = REPO / "recipes/mnv3_search.yaml"
    raw = read_raw_recipe(path)
    space = recipe_from_raw(raw, path).search
    assert {"stages.0.target_macs", "stages.0.importance", "stages.4.lr"} <= set(space.params)
    check_space(raw, space, path)  # a UserError names any value the recipe would refuse
    # The same check refuses the shipped space with one bound out of its stage's range.
    broken = copy.deepcopy(raw)
    broken["search"]["params"]["stages.0.target_macs"] = {"low": 0.4, "high": 1.5}
    with pytest.raises(UserError, match=r"search\.params\.stages\.0\.target_macs: 1\.5 is not "
                                        r"a valid value there"):
        check_space(broken, recipe_from_raw(broken, path).search, path)


def test_values_drawn_again_reuse_the_finished_trial(tmp_path, search_recipe):
    import optuna

    raw = yaml.safe_load(search_recipe.read_text())
    raw["search"]["params"] = {"stages.0.importance": {"choices": ["l2"]}}  # one point
    raw["search"]["min_f1"] = 0.1
    search_recipe.write_text(yaml.safe_dump(raw))
    out = tmp_path / "search"
    code, output = run_cli(["search", search_recipe, "--trials", 2, "--out", out])
    assert code == 0, output
    first, second = optuna.load_study(study_name="search",
                                      storage=f"sqlite:///{out / 'study.db'}").trials
    assert second.user_attrs["copy_of"] == first.number and second.values == first.values
    assert second.constraints == first.constraints
    assert len(list((out / "trials").iterdir())) == 1  # run once


def test_a_study_continued_with_an_edited_space_is_refused_with_one_line(tmp_path,
                                                                        search_recipe):
    out = tmp_path / "search"
    code, output = run_cli(["search", search_recipe, "--trials", 1, "--out", out,
                            "--set", "search.proxy_epochs=0"])
    assert code == 0, output
    # the same parameter, now a choice instead of a range
    assert_user_error(["search", search_recipe, "--trials", 2, "--out", out,
                       "--set", "search.proxy_epochs=0",
                       "--set", "search.params.[stages.0.target_macs]={choices: [0.5, 0.6]}"],
                      "search.params.stages.0.target_macs", "another kind of range")


@pytest.mark.slow
def test_a_tracked_search_logs_each_trial_as_a_child_of_the_study(tmp_path, search_recipe):
    from compress.tracking import mlflow_problem

    if mlflow_problem():
        pytest.skip(f"{mlflow_problem()}; search tracking is untested here")
    from mlflow.tracking import MlflowClient

    out = tmp_path / "runs" / "search"
    code, output = run_cli(["search", search_recipe, "--trials", 2, "--out", out, "--track",
                            "mlflow"])
    assert code == 0, output
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("compress").experiment_id])
    (study,) = [run for run in runs if run.info.run_name == "search search"]
    trials = [run for run in runs if run is not study]
    assert sorted(run.info.run_name for run in trials) == ["search-0000", "search-0001"]
    assert {run.data.tags["mlflow.parentRunId"] for run in trials} == {study.info.run_id}
    assert all(run.info.status == "FINISHED" for run in runs)
    assert all("macro_f1" in run.data.metrics for run in trials)
    assert study.data.params["search.params.stages.1.lr.log"] == "True"
    assert {item.path for item in client.list_artifacts(study.info.run_id)} >= {"pareto.md"}

"""`compress arch-search`: a real Optuna study over model designs trained from scratch on a
tiny folder, the front's model YAMLs trained again, two workers sharing one SQLite study,
early stopping, and the space's validation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY_CLASSES, TINY_MNV3, assert_user_error, run_cli, write_tiny_recipe


def write_search_file(tmp_path: Path, tiny_data: Path) -> Path:
    """Two slots over a tiny model, a 1-epoch proxy, the tiny MobileNetV3 as reference."""
    (tmp_path / "reference.yaml").write_text(yaml.safe_dump(TINY_MNV3))
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({
        "DATA_PATH": str(tiny_data), "IMG_SIZE": 32, "EPOCHS": 2, "BATCH_SIZE": 8,
        "NUM_WORKERS": 0, "CALIBRATION_RATIO": 0.25}))
    search = {
        "data": str(tmp_path / "data.yaml"),
        "reference": str(tmp_path / "reference.yaml"),
        "architecture": {
            "input_size": {"choices": [24, 32]},
            "width_multiple": {"choices": [0.5, 1.0]},
            "train": {"lr": {"low": 0.01, "high": 0.1, "log": True}},
            "backbone": [
                [1, "Conv", [8, 3, 2]],
                {"module": {"choices": ["InvertedResidualv3", "DWConv", "none"]},
                 "channels": {"choices": [8, 16]}, "se": {"choices": [0, 1]}, "stride": 2},
                {"module": {"choices": ["InvertedResidualv2", "Conv", "Bottleneck"]},
                 "channels": 16, "repeat": {"low": 1, "high": 2}, "expansion": 2},
                [1, "Conv", [{"choices": [32, 64]}, 1, 1]],
                [1, "GlobalAvgPool", []], [1, "Flatten", []], [1, "Linear", [3]]],
        },
        "search": {"proxy": {"epochs": 1}, "seed": 0, "bench": {"warmup": 1, "runs": 5}},
    }
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(search, sort_keys=False))
    return path


@pytest.fixture()
def arch_search_file(tmp_path, tiny_data) -> Path:
    return write_search_file(tmp_path, tiny_data)


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory, tiny_data) -> tuple[Path, Path]:
    """A 3-trial search over the tiny space: its search file and --out folder."""
    folder = tmp_path_factory.mktemp("arch")
    search_file = write_search_file(folder, tiny_data)
    code, output = run_cli(["arch-search", search_file, "--trials", 3, "--out",
                            folder / "search"])
    assert code == 0, output
    return search_file, folder / "search"


def _study(out: Path, name: str = "space"):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


def _dominates(a, b) -> bool:
    """a is at least as good as b in both objectives (F1 up, latency down) and better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def test_a_search_writes_a_front_of_model_yamls_that_train_as_the_trials_did(
        tmp_path, finished_search):
    import json

    from compress.checkpoint import load_checkpoint
    from compress.models.kindle import load_kindle_yaml

    _, out = finished_search
    study = _study(out)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    for trial in trials:
        figures = trial.user_attrs["figures"]
        # Judged on the held-out train images, never val; timed against the reference.
        history = json.loads((Path(trial.user_attrs["run_dir"]) / "history.json").read_text())
        assert trial.values[0] == pytest.approx(history[-1]["held_out_macro_f1"])
        assert trial.values[1] == pytest.approx(1 / figures["speedup"])
        assert figures["latency_ms"] > 0 and figures["macs"] > 0 and figures["params"] > 0
        assert len(history) == 1  # the 1-epoch proxy, not the data YAML's 2 epochs
        assert not (Path(trial.user_attrs["run_dir"]) / "train_state.safetensors").exists()
    front = study.best_trials
    assert front
    for member in front:
        assert not any(_dominates(other.values, member.values) for other in trials)
    for other in trials:
        if other not in front:
            assert any(_dominates(member.values, other.values) or member.values == other.values
                       for member in front)
    # Each front design as a model YAML and a data YAML that `compress train` takes.
    member = front[0]
    design = member.user_attrs["design"]
    model_yaml = out / "front" / f"space-{member.number:04d}.yaml"
    data_yaml = out / "front" / f"space-{member.number:04d}.data.yaml"
    assert load_kindle_yaml(model_yaml) == design["model"]
    data = yaml.safe_load(data_yaml.read_text())
    assert data["IMG_SIZE"] == design["input_size"] and data["EPOCHS"] == 2
    assert data["INIT_LR"] == pytest.approx(design["lr"]) and data["CALIBRATION_RATIO"] == 0.25
    assert str(model_yaml) in (out / "pareto.md").read_text()
    assert (out / "pareto.png").stat().st_size > 0
    code, output = run_cli(["train", "--model", model_yaml, "--data", data_yaml, "--epochs", 1,
                            "--out", tmp_path / "full"])
    assert code == 0, output
    trained = load_checkpoint(tmp_path / "full" / "last.safetensors")
    proxy = load_checkpoint(Path(member.user_attrs["run_dir"]) / "last.safetensors")
    assert trained.model_spec == proxy.model_spec == {"kind": "kindle", "config": design["model"]}
    assert trained.input_size == design["input_size"] and trained.classes == TINY_CLASSES
    assert {k: v.shape for k, v in trained.model.state_dict().items()} == \
        {k: v.shape for k, v in proxy.model.state_dict().items()}
    # Trained, the design is a checkpoint like any other: compress run prunes and exports it.
    recipe = write_tiny_recipe(tmp_path / "compress.yaml", tmp_path / "full" / "last.safetensors",
                               Path(data["DATA_PATH"]), [{"prune": {"target_macs": 0.7}},
                                                         {"export": {"fp16": False}}])
    code, output = run_cli(["run", recipe, "--out", tmp_path / "compressed"])
    assert code == 0, output
    assert (tmp_path / "compressed" / "stages" / "02-export" / "model.onnx").is_file()


def test_the_proxy_benchmark_ranks_the_searched_designs(tmp_path, finished_search):
    import json

    search_file, out = finished_search
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "arch_proxy.py"),
                           str(search_file), "--search", str(out), "--designs", "3",
                           "--long-epochs", "2", "--proxy", "epochs=1,train_share=0.5",
                           "--out", str(tmp_path / "proxy")], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "proxy" / "arch_proxy.json").read_text())
    assert len(result["designs"]) == 3 and result["long_epochs"] == 2
    assert set(result["spearman_held_out"]) == {
        "search proxy (1 epochs, share 1.0, scale 1.0)", "epochs=1,train_share=0.5"}
    for design in result["designs"]:
        assert design["long"]["epochs"] == 2
        assert design["proxies"]["epochs=1,train_share=0.5"]["epochs"] == 1
    assert "Spearman vs held-out" in done.stdout


def test_hopeless_trials_stop_after_an_epoch(tmp_path, arch_search_file):
    raw = yaml.safe_load(arch_search_file.read_text())
    raw["search"] |= {"proxy": {"epochs": 3}, "prune_below_f1": 0.999}
    raw["architecture"]["train"]["lr"] = 1e-6  # stays at chance: hopeless by construction
    arch_search_file.write_text(yaml.safe_dump(raw))
    out = tmp_path / "search"
    code, output = run_cli(["arch-search", arch_search_file, "--trials", 2, "--out", out])
    assert code == 0, output
    trials = _study(out).get_trials()
    assert [t.state.name for t in trials] == ["PRUNED", "PRUNED"]
    for trial in trials:
        assert len(trial.user_attrs["curve"]) == 2  # stopped after epoch 2 of 3
        assert "pruned after epoch 2" in trial.user_attrs["pruned"]
    assert "(empty: no finished trial)" in output


def test_the_median_rule_stops_a_trial_far_below_the_finished_ones():
    import optuna

    from compress.search.arch_job import ArchSearchSection
    from compress.search.arch_trial import MEDIAN_AFTER, _stop_if_hopeless

    study = optuna.create_study(directions=["maximize", "minimize"])
    for f1 in [0.6, 0.7, 0.8][:MEDIAN_AFTER]:
        trial = study.ask()
        trial.set_user_attr("curve", [f1 - 0.2, f1])
        study.tell(trial, [f1, 0.5])

    class Job:
        section = ArchSearchSection(prune_margin=0.15)

    lines = []
    running = study.ask()
    _stop_if_hopeless(running, Job, 2, 0.56, lines.append)  # median 0.7: within the margin
    with pytest.raises(optuna.TrialPruned):
        _stop_if_hopeless(running, Job, 2, 0.54, lines.append)
    assert "below the median 0.7000 of 3 finished trials" in lines[0]


@pytest.mark.slow
@pytest.mark.processes
def test_two_workers_share_one_sqlite_study_without_running_a_trial_twice(
        tmp_path, arch_search_file):
    out = tmp_path / "search"
    done = subprocess.run([sys.executable, "-m", "compress", "arch-search",
                           str(arch_search_file), "--trials", "4", "--workers", "2",
                           "--out", str(out)], cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[worker 0]" in done.stdout and "[worker 1]" in done.stdout
    trials = _study(out).get_trials()
    finished = [t for t in trials if t.state.name == "COMPLETE"]
    assert 4 <= len(finished) <= 5  # a worker may start one more before it sees the count
    assert len({t.number for t in trials}) == len(trials)
    trained = [t for t in finished if "copy_of" not in t.user_attrs]
    folders = {t.user_attrs["run_dir"] for t in trained}
    assert len(folders) == len(trained)
    assert folders == {str(p) for p in (out / "trials").iterdir()}
    by_number = {t.number: t for t in finished}
    for copy in (t for t in finished if "copy_of" in t.user_attrs):
        original = by_number[copy.user_attrs["copy_of"]]
        assert copy.user_attrs["design_key"] == original.user_attrs["design_key"]
        assert copy.values == original.values


def _slot(raw: dict, index: int) -> dict:
    return raw["architecture"]["backbone"][index]


@pytest.mark.parametrize("edit, fragments", [
    (lambda raw: _slot(raw, 1).update(stride=4, module="InvertedResidualv3")
     or _slot(raw, 0)[2].__setitem__(2, 8),
     ["strides by up to 32x", "smallest input_size (24 px)"]),
    (lambda raw: _slot(raw, 1).update(channels={"choices": [0, 8]}),
     ["architecture.backbone.1.channels", "whole number >= 1, got 0"]),
    (lambda raw: _slot(raw, 1).update(channels={"choices": [1, 8]}),
     ["architecture.backbone.1.channels", "1 channels at width_multiple 0.5"]),
    (lambda raw: _slot(raw, 2).update(stride=2),
     ["architecture.backbone.2", "Bottleneck cannot stride"]),
    (lambda raw: _slot(raw, 1).update(module={"choices": ["InvertedResidualv4"]}),
     ["'InvertedResidualv4' is not a slot module"]),
    (lambda raw: _slot(raw, 6)[2].__setitem__(0, 5),
     ["the last row must be [1, Linear, [3]]", "3 classes"]),
    (lambda raw: _slot(raw, 1).update(kernel={"low": 5, "high": 3}),
     ["architecture.backbone.1.kernel", "low must be below high"]),
    (lambda raw: _slot(raw, 1).update(kernel={"choices": [3, 4]}), ["kernels must be odd"]),
    (lambda raw: _slot(raw, 3)[2].__setitem__(0, {"choices": [32, "wide"]}),
     ["architecture.backbone.3.2.0: Conv wants a number", "got a string ('wide')"]),
    (lambda raw: raw["search"].update(proxy={"epoch": 1}), ["search.proxy.epoch", "unknown key"]),
    (lambda raw: raw.update(data="no/such/data.yaml"), ["no/such/data.yaml", "file not found"]),
    (lambda raw: raw.update(reference="no/such/model.safetensors"),
     ["reference no/such/model.safetensors", "file not found"]),
    (lambda raw: raw["architecture"].update(backbone=[]), ["architecture.backbone",
                                                          "the backbone is empty"]),
])
def test_bad_spaces_fail_with_one_line_before_any_trial(tmp_path, arch_search_file, edit,
                                                        fragments):
    raw = yaml.safe_load(arch_search_file.read_text())
    edit(raw)
    arch_search_file.write_text(yaml.safe_dump(raw))
    out = tmp_path / "s"
    assert_user_error(["arch-search", arch_search_file, "--trials", 1, "--out", out],
                      *fragments)
    assert not (out / "trials").exists()


def test_the_shipped_architecture_search_is_valid():
    from compress.search.arch_job import ArchSearchFile
    from compress.search.architecture import check_space, load_space

    raw = yaml.safe_load((REPO / "recipes" / "arch_mnv3.yaml").read_text())
    ArchSearchFile(**raw)  # every section's keys and types
    assert (REPO / raw["reference"]).is_file() and (REPO / raw["data"]).is_file()
    space = load_space(raw["architecture"], "recipes/arch_mnv3.yaml")
    check_space(space, 6, "recipes/arch_mnv3.yaml")  # every value builds at 96 px

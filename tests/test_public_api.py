"""The public Python API (`compress.__all__`): every name resolves, `import compress` stays
cheap, and `compress.run` runs a recipe as `compress run` does."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest
import yaml
from conftest import BENCH_CUT_SHORT, REPO

import compress


def test_every_public_name_resolves_and_is_listed():
    assert set(compress.__all__) == {"__version__", *compress._EXPORTS}
    for name in compress.__all__:
        assert getattr(compress, name) is not None, name
    assert set(compress.__all__) <= set(dir(compress))
    from compress.stages.registry import list_stages

    assert compress.list_stages is list_stages
    assert {"prune", "decompose", "finetune", "export"} <= set(compress.list_stages())
    with pytest.raises(AttributeError, match="no_such_name"):
        compress.no_such_name  # noqa: B018


def test_benchmarks_use_the_public_api_only():
    """Benchmarks import `compress` and use the names of `compress.__all__`, so that a
    change inside the package cannot break them unnoticed."""
    offenders = []
    for path in sorted((REPO / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("compress"):
                internal = node.module != "compress" or \
                    any(alias.name not in compress.__all__ for alias in node.names)
            elif isinstance(node, ast.Import):
                internal = any(alias.name.startswith("compress.") for alias in node.names)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                internal = node.value.id == "compress" and node.attr not in compress.__all__
            else:
                continue
            if internal:
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_import_compress_does_not_import_torch():
    probe = "import sys, compress; compress.__version__; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=REPO, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.slow
def test_run_the_smoke_recipe_without_data(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the recipe's checkpoint path is relative to the working folder
    lines = []
    timing_cut_short = BENCH_CUT_SHORT[1::2]  # the figures are not what this test checks
    records = compress.run("recipes/smoke.yaml", out=tmp_path / "run",
                           overrides=["data.root=/nonexistent", *timing_cut_short],
                           echo=lines.append)
    assert [r.index for r in records] == [0, 1, 2, 3, 4]
    assert all(r.macs > 0 for r in records)
    assert records[1].macs < 0.65 * records[0].macs  # prune to 60 % of the MACs
    assert all(r.macro_f1 is None for r in records)  # no data: F1 is n/a
    assert any("no data folder" in line for line in lines)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert [s["macs"] for s in report["stages"]] == [r.macs for r in records]


def _tiny_recipe(tmp_path, checkpoint) -> compress.Recipe:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "checkpoint": str(checkpoint),
        "bench": {"batch_sizes": [1], "warmup": 0, "runs": 3, "compare_runtimes": False},
        "stages": [{"prune": {"ratio": 0.25}}],
    }))
    return compress.load_recipe(path)


def test_run_a_loaded_recipe_with_an_override(tmp_path, tiny_checkpoint, tiny_data):
    recipe = _tiny_recipe(tmp_path, tiny_checkpoint)
    records = compress.run(recipe, out=tmp_path / "run", data=tiny_data,
                           overrides=["stages.0.ratio=0.5"], echo=lambda line: None)
    assert [r.name for r in records] == ["input", "prune"]
    written = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert written["stages"][0]["prune"]["ratio"] == 0.5
    assert written["data"]["root"] == str(tiny_data)
    assert records[1].macs < records[0].macs


def test_a_bad_override_of_a_loaded_recipe_is_a_user_error(tmp_path, tiny_checkpoint):
    recipe = _tiny_recipe(tmp_path, tiny_checkpoint)
    with pytest.raises(compress.UserError, match="stages.0.prune.ratio"):
        compress.run(recipe, out=tmp_path / "run", overrides=["stages.0.ratio=1.5"])
    assert not (tmp_path / "run").exists()


def test_a_data_folder_that_does_not_exist_is_an_error_not_no_data(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    for data, reason in ((tmp_path / "tinyy", "no such folder"),
                         (REPO / "README.md", "is a file")):
        with pytest.raises(compress.UserError, match=reason):
            compress.run("recipes/smoke.yaml", out=tmp_path / "run", data=data)
    assert not (tmp_path / "run").exists()

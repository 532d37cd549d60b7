"""benchmarks/peers.py in its quick mode, benchmarks/train_speed.py and `compress analyze`, on
a tiny checkpoint and folder, so that none of them can rot."""

from __future__ import annotations

import csv
import json

from conftest import assert_user_error, run_cli


def test_analyze_writes_the_table_and_plot(tmp_path, tiny_checkpoint, tiny_data):
    out = tmp_path / "analysis"
    code, output = run_cli(["analyze", tiny_checkpoint, "--data", tiny_data, "--out", out,
                            "--ratios", "0.25,0.5", "--calibration-images", "8"])
    assert code == 0, output
    table = json.loads((out / "sensitivity.json").read_text())
    kinds = {c["kind"] for c in table["cuts"]}
    assert kinds == {"prune", "squeeze_excite", "residual_block"}
    with (out / "sensitivity.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(table["cuts"])
    assert (out / "sensitivity.png").stat().st_size > 1000
    assert "baseline macro F1" in output and "on val (BatchNorm re-estimated)" in output


def test_analyze_names_bad_options(tmp_path, tiny_checkpoint, tiny_data):
    assert_user_error(["analyze", tiny_checkpoint, "--data", tiny_data, "--kinds", "layers"],
                      "--kinds", "layers")
    assert_user_error(["analyze", tiny_checkpoint, "--data", tiny_data, "--ratios", "1.5"],
                      "--ratios")

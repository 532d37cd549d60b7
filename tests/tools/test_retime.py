"""`compress retime`: finished models timed again against one baseline, several rounds."""

from __future__ import annotations

import json

from conftest import assert_user_error, run_cli

from compress.checkpoint import load_checkpoint
from compress.ops.onnx_export import export_onnx


def test_retime_repeats_the_interleaved_timing(tmp_path, tiny_checkpoint):
    onnx = export_onnx(load_checkpoint(tiny_checkpoint).model, tmp_path / "tiny.onnx", 32)
    out = tmp_path / "ratios.json"
    code, output = run_cli(["retime", str(onnx), f"itself={onnx}",
                            f"checkpoint={tiny_checkpoint}", "--runs", "6", "--rounds", "3",
                            "--json", str(out)])
    assert code == 0, output
    assert "note: checkpoint runs in torch and the baseline in ONNX Runtime" in output
    ratios = json.loads(out.read_text())["models"]
    assert set(ratios) == {"itself", "checkpoint"}
    assert all(len(r[key]) == 3 and min(r[key]) > 0 for r in ratios.values()
               for key in ("speedups", "speedups_fastest_runs"))
    row = next(line for line in output.splitlines() if line.startswith("itself "))
    medians = [float(v.rstrip("x,")) for v in row.split("rounds")[1].split("fastest")[0].split()]
    assert medians == [round(v, 2) for v in ratios["itself"]["speedups"]]
    out.unlink()
    for bad, message in ((f"gone={tmp_path / 'gone.onnx'}", "model file not found"),
                         (str(onnx), "give NAME=MODEL")):
        assert_user_error(["retime", str(onnx), bad, "--json", str(out)], message)
        assert not out.exists()
    assert_user_error(["retime", str(onnx), f"a={onnx}", f"a={onnx}"], "named twice")


def test_retime_threads_reach_every_session(tmp_path, tiny_checkpoint, monkeypatch):
    import compress.tools.retime as retime_module

    opened = []
    real_open = retime_module.open_model

    def recording_open(path, options=None):
        model = real_open(path, options) if options is not None else real_open(path)
        opened.append(model.runner.session.get_session_options().intra_op_num_threads)
        return model

    monkeypatch.setattr(retime_module, "open_model", recording_open)
    onnx = export_onnx(load_checkpoint(tiny_checkpoint).model, tmp_path / "tiny.onnx", 32)
    out = tmp_path / "ratios.json"
    code, output = run_cli(["retime", str(onnx), f"itself={onnx}", "--runs", "4", "--rounds",
                            "1", "--threads", "1", "--json", str(out)])
    assert code == 0, output
    assert opened == [1, 1]
    assert "1 intra-op thread)" in output and json.loads(out.read_text())["threads"] == 1
    assert_user_error(["retime", str(onnx), f"itself={onnx}", "--threads", "0"], "--threads")

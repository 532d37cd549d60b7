"""The run folder's records: typed status, the stage's result, and folders from before the
typed results."""

from __future__ import annotations

import json
from dataclasses import asdict

import compress
from compress.pipeline.runstore import RunStore, StageRecord
from compress.stages.base import StageStatus


def _record(**changes) -> StageRecord:
    fields = dict(index=1, name="prune", status="done", note="", params=10, macs=20,
                  latency_ms=1.0, latency_p90_ms=1.1, speedup_vs_input=1.5,
                  latency_by_batch={}, provider="CPUExecutionProvider", macro_f1=0.5,
                  accuracy=0.6, score=1.0, seconds=2.0, checkpoint="c", onnx="o",
                  result={"widths": {"a": [16, 8]}})
    return StageRecord(**(fields | changes))


def test_a_record_round_trips_with_its_status_as_an_enum(tmp_path):
    store = RunStore(tmp_path)
    files = {"checkpoint": str(tmp_path / "stages/01-prune/model.safetensors"),
             "onnx": str(tmp_path / "stages/01-prune/model.onnx")}
    store.write_record(_record(**files))
    written = json.loads((tmp_path / "stages/01-prune/record.json").read_text())
    assert written["status"] == "done" and written["result"] == {"widths": {"a": [16, 8]}}
    assert written["onnx"] == "stages/01-prune/model.onnx"  # relative to the run folder
    record, = compress.read_run(tmp_path)
    assert record.status is StageStatus.DONE and record == _record(**files)


def test_records_written_before_the_typed_results_still_read(tmp_path):
    legacy = asdict(_record(status="skipped"))
    legacy["details"] = legacy.pop("result")
    folder = tmp_path / "stages/01-prune"
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps(legacy))
    record, = compress.read_run(tmp_path)
    assert record.status is StageStatus.SKIPPED and record.onnx == str(tmp_path / "o")
    assert record.result == {"widths": {"a": [16, 8]}}

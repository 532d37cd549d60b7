"""The run folder: one sub-folder per stage, a frozen record per finished stage.

RUN/recipe.yaml                 the resolved recipe the run was started with
RUN/stages/NN-name/             model.safetensors, model.onnx, record.json (+ stage files)
RUN/report.json, report.md, report.png
A stage counts as finished when its record.json exists; it is written last and atomically,
so an interruption never leaves a half-finished stage looking finished.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compress.errors import UserError
from compress.fileio import write_json_atomic
from compress.stages.base import StageStatus


@dataclass(frozen=True)
class StageRecord:
    index: int
    name: str
    status: StageStatus
    note: str
    params: int
    macs: int
    latency_ms: float  # batch-1 median
    latency_p90_ms: float
    speedup_vs_input: float  # batch-1 medians, input and this stage timed interleaved
    latency_by_batch: dict[str, dict[str, float]]
    provider: str
    macro_f1: float | None
    accuracy: float | None
    score: float | None
    seconds: float
    checkpoint: str
    onnx: str
    slower: bool = False
    result: dict[str, Any] = field(default_factory=dict)  # the stage's typed result, as data
    end_to_end_s: float | None = None  # decode + preprocess + predict the split, batch 1
    input_size: int | None = None  # the stage's model input size (a resize stage changes it)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageRecord:
        """A record as written to record.json; runs written before the typed results named
        the stage's result `details`."""
        data = dict(data)
        if "details" in data:
            data["result"] = data.pop("details")
        return cls(**data)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", StageStatus(self.status))  # as read from JSON


class RunStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def stage_dir(self, index: int, name: str) -> Path:
        path = self.root / "stages" / f"{index:02d}-{name}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def prepare(self, recipe_yaml: str, resume: bool) -> None:
        """Start a new run, or check that a resumed run continues the same recipe."""
        recipe_path = self.root / "recipe.yaml"
        if recipe_path.is_file() and self.completed():
            if not resume:
                raise UserError(f"run folder {self.root} already holds results: pass --resume "
                                "to continue it, or choose another --out")
            if recipe_path.read_text() != recipe_yaml:
                raise UserError(f"run folder {self.root} was started with a different recipe "
                                f"({recipe_path}); choose another --out")
        self.root.mkdir(parents=True, exist_ok=True)
        recipe_path.write_text(recipe_yaml)

    def completed(self) -> list[StageRecord]:
        records = []
        for path in sorted((self.root / "stages").glob("*/record.json")):
            records.append(StageRecord.from_json(json.loads(path.read_text())))
        return records

    def write_record(self, record: StageRecord) -> None:
        write_json_atomic(self.stage_dir(record.index, record.name) / "record.json",
                          asdict(record) | {"status": record.status.value})


def read_run(folder: str | Path) -> list[StageRecord]:
    """The records of a run folder's finished stages, the input first."""
    return RunStore(folder).completed()

"""The run folder: one sub-folder per stage, a frozen record per finished stage.

RUN/recipe.yaml                 the resolved recipe the run was started with
RUN/stages/NN-name/             model.safetensors, model.onnx, record.json (+ stage files)
RUN/report.json, report.md, report.png
A stage counts as finished when its record.json exists; it is written last and atomically,
so an interruption never leaves a half-finished stage looking finished.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.errors import UserError
from compress.fileio import (
    LockBusy,
    check_folder_possible,
    file_lock,
    lock_owner,
    write_atomic,
    write_json_atomic,
)

if TYPE_CHECKING:
    from compress.stages.base import StageStatus


@dataclass(frozen=True)
class StageRecord:
    index: int
    name: str
    status: StageStatus
    note: str
    params: int
    macs: int
    # The three latency figures are None for a skipped stage: it produced no file to time.
    latency_ms: float | None  # batch-1 median
    latency_p90_ms: float | None
    speedup_vs_input: float | None  # batch-1 medians, input and this stage timed interleaved
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
    # On the train images held out of the input model's training; None where it records none.
    held_out_macro_f1: float | None = None
    # Where the stages are timed in torch: top-1 agreement of the timed form (FP16, CUDA
    # graphs on a GPU) with the float32 ONNX file on the evaluated images; None elsewhere.
    deployed_top1_agreement: float | None = None
    # The stage whose timing this one reuses: its ONNX graph is the same (same structure and
    # weights), so timing it again would only report the machine's noise as a difference.
    timing_from: int | None = None
    # p10 and p90 of the batch-1 speed-up's per-cycle ratios (compress.measure.latency)
    speedup_spread: list[float] | None = None
    # Other processes used the cores throughout its timing: re-timing up to the limit did
    # not get clear of them (compress.measure.disturbance), and its figures include them.
    timing_disturbed: bool = False

    @property
    def decision_f1(self) -> float | None:
        """The macro F1 that choices between stages or trials are judged by: on the held-out
        train images where there are some, else on the evaluated split (val)."""
        return self.held_out_macro_f1 if self.held_out_macro_f1 is not None else self.macro_f1

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageRecord:
        """A record as written to record.json; runs written before the typed results named
        the stage's result `details`."""
        data = dict(data)
        if "details" in data:
            data["result"] = data.pop("details")
        return cls(**data)

    def __post_init__(self) -> None:
        # Imported here: a process that only locks a run folder or reads its records need
        # not load torch with the stages.
        from compress.stages.base import StageStatus

        object.__setattr__(self, "status", StageStatus(self.status))  # as read from JSON


# Written when a run starts: the folder belongs to compress, and a later run may write there.
MARKER = ".compress-run"
# Locked while a process runs in the folder (fileio.file_lock); it holds the process's pid.
LOCK = ".lock"


class RunStore:
    """record.json names the stage's own files relative to the run folder, so a run resumes
    from any working folder and a moved run folder still reads; in memory they are
    absolute."""

    def __init__(self, root: str | Path):
        self.root = Path(os.path.abspath(root))

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder for this process: a second run into it is refused with one line
        while this one lives; the lock of a killed run is taken over (see fileio.file_lock).
        A lock file that names a live process is honoured even where that process holds no
        file lock (a compress that kept the lock as a pid file only)."""
        self._claim()
        created = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        lock = self.root / LOCK
        with ExitStack() as held:
            owner = lock_owner(lock)
            if owner is not None and owner != os.getpid() and _alive(owner):
                raise self._in_use(owner)
            try:
                held.enter_context(file_lock(lock, wait=False))
            except LockBusy as busy:
                raise self._in_use(busy.owner) from None
            try:
                yield
            except BaseException:
                if created and not self.completed():  # a run that failed before any stage
                    shutil.rmtree(self.root, ignore_errors=True)
                raise

    def _in_use(self, owner: int | None) -> UserError:
        by = f"process {owner}" if owner is not None else "another process"
        return UserError(f"run folder {self.root} is in use by {by}; wait for it or choose "
                         "another --out")

    def adopt(self) -> None:
        """Make the folder a run folder before a run starts, for a caller that keeps files
        of its own beside the run's (a search trial's log.txt)."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / MARKER).touch()

    def _claim(self) -> None:
        """Refuse a folder that holds files no run wrote: a run never writes over them."""
        check_folder_possible(self.root, "--out")
        if not self.root.is_dir() or (self.root / MARKER).is_file() or self.completed():
            return
        foreign = sorted(p.name for p in self.root.iterdir())
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise UserError(f"--out {self.root}: holds files that no compress run wrote "
                            f"({shown}); choose a new or empty folder")

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
            if not _same_recipe(recipe_path.read_text(), recipe_yaml):
                raise UserError(f"run folder {self.root} was started with a different recipe "
                                f"({recipe_path}); choose another --out")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / MARKER).touch()
        write_atomic(recipe_path, recipe_yaml)

    def completed(self) -> list[StageRecord]:
        records = []
        for path in sorted((self.root / "stages").glob("*/record.json")):
            try:
                record = StageRecord.from_json(json.loads(path.read_text()))
            except (ValueError, TypeError) as exc:  # truncated, or another schema
                raise UserError(f"run folder {self.root}: {path.relative_to(self.root)} is "
                                f"damaged ({type(exc).__name__}); choose another --out") from None
            records.append(replace(record, checkpoint=str(self.root / record.checkpoint),
                                   onnx=str(self.root / record.onnx)))
        return records

    def write_record(self, record: StageRecord) -> None:
        write_json_atomic(self.stage_dir(record.index, record.name) / "record.json",
                          asdict(record) | {"status": record.status.value,
                                            "checkpoint": self._inside(record.checkpoint),
                                            "onnx": self._inside(record.onnx)})

    def _inside(self, path: str) -> str:
        """`path` relative to the run folder when it lies in it (else absolute)."""
        absolute = Path(os.path.abspath(path))
        return str(absolute.relative_to(self.root)) if absolute.is_relative_to(self.root) \
            else str(absolute)


def read_run(folder: str | Path) -> list[StageRecord]:
    """The records of a run folder's finished stages, the input first."""
    return RunStore(folder).completed()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _same_recipe(started: str, given: str) -> bool:
    """The recipe a run was started with and the one it is resumed with; where it is tracked
    (`tracking`) may change between the two."""
    import yaml

    started_raw, given_raw = yaml.safe_load(started), yaml.safe_load(given)
    for raw in (started_raw, given_raw):
        raw.pop("tracking", None)
    return started_raw == given_raw

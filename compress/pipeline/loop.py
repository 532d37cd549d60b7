"""Runs a recipe: [stage -> save -> measure] x N -> report.

The loop owns the run folder, resume, and what is saved after every stage (and of the
input checkpoint as stage 0); the measurer measures.
"""

from __future__ import annotations

import copy
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from compress.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from compress.data.training_data import resize_training_data
from compress.device import resolve_device
from compress.measure.macs import count_macs, count_params
from compress.measure.parity import FP16_MIN_TOP1_AGREEMENT
from compress.ops.onnx_export import export_onnx
from compress.pipeline.final_model import FinalModelFigures
from compress.pipeline.html_report import RunPage, write_html_report
from compress.pipeline.measurer import Measurer, open_data
from compress.pipeline.recorder import SavedStage, StageRecorder
from compress.pipeline.report import (
    RunReport,
    format_row,
    header_line,
    input_latency_ms,
    table_legend,
    write_report,
)
from compress.pipeline.runstore import RunStore, StageRecord
from compress.recipe.loading import recipe_to_yaml, resolved_recipe
from compress.recipe.schema import Recipe
from compress.stages.base import Stage, StageContext, StageOutput, StageResult, StageStatus
from compress.tracking import Tracker, open_tracker


def run_recipe(recipe: Recipe, out_dir: str | Path, resume: bool = False,
               echo: Callable[[str], None] = print,
               after_stage: Callable[[StageRecord], None] | None = None,
               tracking_parent: str | None = None) -> list[StageRecord]:
    """Run every stage of `recipe` (validated by load_recipe) into `out_dir`; return one
    record per stage (0 = input). `after_stage` sees each new record once it is saved; an
    exception it raises stops the run there (compress search prunes hopeless trials so).
    Where the recipe is tracked, `tracking_parent` is the MLflow run it is a child of (a
    search's study)."""
    return _Run(recipe, Path(out_dir), resume, echo, after_stage, tracking_parent).run()


def run_tracker(recipe: Recipe, out_dir: Path, echo: Callable[[str], None]) -> Tracker:
    """The recipe's tracker (off unless `tracking.to` is mlflow), refusing at once where
    MLflow is asked for and not installed."""
    settings = recipe.tracking
    return open_tracker("tracking.to mlflow" if settings.to == "mlflow" else None,
                        settings.uri, out_dir.resolve().parent, settings.experiment, echo)


@dataclass(frozen=True)
class InputResult(StageResult):
    checkpoint: str = ""


class _Run:
    """One run of a recipe; its state (the model, the data at the current input size, the
    records so far) lives here instead of in closures."""

    def __init__(self, recipe: Recipe, out_dir: Path, resume: bool,
                 echo: Callable[[str], None],
                 after_stage: Callable[[StageRecord], None] | None,
                 tracking_parent: str | None = None):
        self.recipe, self.out_dir, self.echo, self.after_stage = recipe, out_dir, echo, after_stage
        self.tracker = run_tracker(recipe, out_dir, echo)
        self.tracking_parent = tracking_parent
        self.measurer: Measurer | None = None  # once the data is open
        self.store = RunStore(out_dir)
        self.input = recipe.input_checkpoint()  # loaded once, when the recipe was checked
        self.stages = recipe.stage_objects()
        self.resume = resume
        self.device = resolve_device(recipe.device)
        self.done: dict[int, StageRecord] = {}
        self.notes = list(recipe.warnings())
        # Stages change their model in place: they work on a copy, the input teaches.
        self.model = copy.deepcopy(self.input.model)

    def run(self) -> list[StageRecord]:
        """The folder is claimed and checked before the images are read: a wrong --out
        fails at once, and nothing the run did not create is written over."""
        with self.store.locked():
            self.store.prepare(recipe_to_yaml(self.recipe), self.resume)
            self.done = {r.index: r for r in self.store.completed()}
            self._start_tracking()
            try:
                self._open_data()
                records = self._stages()
            except BaseException:
                self.tracker.finish(failed=True)
                raise
            finally:
                if self.measurer is not None:
                    self.measurer.close()
            self.tracker.finish()
            return records

    def _start_tracking(self) -> None:
        """An MLflow run named after the run folder, with the recipe as parameters and the
        stages a resumed run already holds."""
        self.tracker.start(self.out_dir.name, resolved_recipe(self.recipe),
                           {"compress.run_folder": str(self.out_dir.resolve())},
                           self.tracking_parent, self.out_dir.resolve().parent / "mlartifacts")
        for record in sorted(self.done.values(), key=lambda r: r.index):
            self.tracker.stage(record)

    def _open_data(self) -> None:
        self.data = open_data(self.recipe, self.input)
        self.measurer = Measurer.for_recipe(self.recipe, self.data, self.device,
                                            self.input.input_size)
        self.recorder = StageRecorder(self.measurer, self.recipe.score, self.recipe.data)
        if self.measurer.runtime.note:
            self.notes.append(self.measurer.runtime.note)
        if self.data is None:
            self.notes.append(f"no data folder at {self.recipe.data.root}: fine-tuning, macro "
                              "F1, accuracy, score and data-driven steps are skipped (n/a); "
                              "give --data ROOT")

    def _stages(self) -> list[StageRecord]:
        for note in self.notes:
            self.echo(note)
        runtime = self.measurer.runtime
        self.echo(table_legend(f"{runtime.runtime} on {runtime.device}"))
        self.echo(header_line())
        if 0 in self.done:
            self.echo(format_row(self.done[0]))
        else:
            started = time.perf_counter()
            self._finish(0, "input", StageOutput(self.model, InputResult(
                checkpoint=self.recipe.checkpoint)), started, _fresh_dir(self.store, 0, "input"))
        for index, (name, stage) in enumerate(zip(self.recipe.stage_names(), self.stages),
                                              start=1):
            if index in self.done:
                self._resume_past(index)
            elif stage.needs_data() and self.data is None:
                self._skip(index, name)
            else:
                self._apply(index, name, stage)
        records = [self.done[i] for i in sorted(self.done)]
        last_run = [r for r in records if r.status is StageStatus.DONE][-1]
        final = FinalModelFigures(self.measurer, self.recipe.data.batch_size)
        floor = final.distance_to_floor(last_run)
        runtimes = final.runtimes_compared(last_run) \
            if self.recipe.bench.compare_runtimes else None
        device = self.measurer.device_fingerprint()
        report = RunReport(records, self.recipe.model_dump(mode="json"), self.notes, floor,
                           runtimes, device)
        paths = write_report(self.out_dir, report)
        paths["html"] = write_html_report([RunPage(self.out_dir, report)],
                                          self.out_dir / "report.html")
        self.echo("report: " + ", ".join(str(p) for p in paths.values()))
        self.tracker.tags({"compress.device." + key: value for key, value in device.items()}
                          | ({"compress.fastest_runtime": runtimes["fastest"]}
                             if runtimes else {}))
        self.tracker.files([*paths.values(), self.out_dir / "recipe.yaml"])
        return records

    def _apply(self, index: int, name: str, stage: Stage) -> None:
        stage_dir = self.store.stage_dir(index, name)
        ctx = StageContext(self.measurer.input_size, self.input.classes, self.device,
                           stage_dir, self.input.model_spec,
                           teacher=self.recipe.teacher_checkpoint().model,
                           run_input=self.input.model,
                           input_training=self.input.original_training, data=self.data,
                           seed=self.recipe.seed, echo=self.echo,
                           measurer=self.measurer)
        started = time.perf_counter()
        output = stage.apply(self.model, ctx)
        self.model = output.model
        if output.input_size is not None:
            self._resize_to(output.input_size)
        self._finish(index, name, output, started, stage_dir)

    def _resume_past(self, index: int) -> None:
        record = self.done[index]
        self.echo(format_row(record, input_latency_ms([self.done[0]])))
        if record.status is StageStatus.DONE:
            resumed = load_checkpoint(record.checkpoint)
            self.model = resumed.model
            self._resize_to(resumed.input_size)

    def _skip(self, index: int, name: str) -> None:
        """A record of its own for a stage that did not run: the model it passes on (the
        previous stage's, unchanged) counted, no file, nothing timed or evaluated."""
        size = self.measurer.input_size
        record = StageRecord(
            index=index, name=name, status=StageStatus.SKIPPED, note="needs data",
            params=count_params(self.model), macs=count_macs(self.model, size),
            latency_ms=None, latency_p90_ms=None, speedup_vs_input=None, latency_by_batch={},
            provider="", macro_f1=None, accuracy=None, score=None, seconds=0.0,
            checkpoint="", onnx="", input_size=size)
        self.store.write_record(record)
        self.done[index] = record
        self.echo(f"skipped stage {index}:{name}: it needs data and none was found")

    def _resize_to(self, size: int) -> None:
        """Later stages and measurements work at `size` (after a resize stage)."""
        if size != self.measurer.input_size:
            if self.data is not None:
                self.data = resize_training_data(self.data, size, *self.recipe.data.augmentation(),
                                                 seed=self.recipe.seed)
            self.measurer.data, self.measurer.input_size = self.data, size

    def _finish(self, index: int, name: str, output: StageOutput, started: float,
                stage_dir: Path) -> StageRecord:
        """Save the stage's model (and its ONNX file unless the stage wrote one), measure
        it, write its record."""
        checkpoint_path = save_checkpoint(stage_dir / "model.safetensors", Checkpoint(
            output.model, self.input.model_spec, self.input.classes, self.measurer.input_size,
            {"stage": name, "result": output.result.to_dict(),
             **(self.data.held_out_info() if self.data is not None else {}),
             **({"original_training": self.input.original_training}
                if self.input.original_training else {})}))
        onnx_path = output.onnx or export_onnx(output.model, stage_dir / "model.onnx",
                                               self.measurer.input_size,
                                               classes=self.input.classes)
        previous = max((r for r in self.done.values()
                        if r.status is StageStatus.DONE and r.index < index),
                       key=lambda r: r.index, default=None)
        record = self.recorder.record(
            SavedStage(index=index, name=name, model=output.model, checkpoint=checkpoint_path,
                       onnx=onnx_path, seconds=time.perf_counter() - started,
                       result=output.result),
            baseline=self.done.get(0), previous=previous)
        self.store.write_record(record)
        self.done[index] = record
        self.tracker.stage(record)
        self._say(record, previous)
        if self.after_stage is not None:
            self.after_stage(record)
        return record

    def _say(self, record: StageRecord, previous: StageRecord | None) -> None:
        self.echo(format_row(record, input_latency_ms([self.done.get(0, record)])))
        stage = f"stage {record.index}:{record.name}"
        if record.note:
            self.echo(f"note: {stage}: {record.note}")
        if record.slower:
            self.echo(f"warning: {stage} made batch-1 latency worse than stage "
                      f"{previous.index}:{previous.name} (timed interleaved)")
        if record.timing_disturbed:
            self.echo(f"warning: {stage}: other processes used the cores throughout its "
                      "timing (timed again up to the limit); its latency and speed-up include "
                      "the disturbed runs")
        agreement = record.deployed_top1_agreement
        if agreement is not None and agreement < FP16_MIN_TOP1_AGREEMENT:
            self.echo(f"warning: {stage}: the form it is timed in ({record.provider}) agrees "
                      f"with the float32 ONNX file on {agreement:.1%} of the evaluated "
                      f"images, under the {FP16_MIN_TOP1_AGREEMENT:.0%} an FP16 export must "
                      "reach: its latency is that of a model that predicts otherwise")


def _fresh_dir(store: RunStore, index: int, name: str) -> Path:
    path = store.stage_dir(index, name)
    shutil.rmtree(path)
    return store.stage_dir(index, name)

"""Runs a recipe: [stage -> save -> measure] x N -> report.

The loop owns the run folder, resume, and what is saved after every stage (and of the
input checkpoint as stage 0); the measurer measures.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from torch import nn

from compress.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from compress.data.training_data import resize_training_data
from compress.device import resolve_device
from compress.ops.onnx_export import export_onnx
from compress.pipeline.measurer import Measurer, open_data
from compress.pipeline.report import format_row, header_line, write_report
from compress.pipeline.runstore import RunStore, StageRecord
from compress.recipe.loading import recipe_to_yaml
from compress.recipe.schema import Recipe
from compress.stages.base import StageContext


def run_recipe(recipe: Recipe, out_dir: str | Path, resume: bool = False,
               echo: Callable[[str], None] = print,
               after_stage: Callable[[StageRecord], None] | None = None) -> list[StageRecord]:
    """Run every stage of `recipe` (validated by load_recipe) into `out_dir`; return one
    record per stage (0 = input). `after_stage` sees each new record once it is saved; an
    exception it raises stops the run there (compress search prunes hopeless trials so)."""
    store = RunStore(out_dir)
    input_checkpoint = load_checkpoint(recipe.checkpoint)
    stages = recipe.stage_objects()
    store.prepare(recipe_to_yaml(recipe), resume)
    device = resolve_device(recipe.device)
    data = open_data(recipe, input_checkpoint)
    notes = []
    if data is None:
        notes.append(f"no data folder at {recipe.data.root}: fine-tuning, macro F1, accuracy, "
                     "score and data-driven steps are skipped (n/a); give --data ROOT")
        echo(notes[-1])
    measurer = Measurer(recipe, data, device, input_checkpoint.input_size)
    teacher = load_checkpoint(recipe.checkpoint).model  # stages change `model` in place
    done = {r.index: r for r in store.completed()}
    echo(header_line())

    def finish(index: int, name: str, model: nn.Module, started: float, details: dict,
               stage_dir: Path) -> StageRecord:
        checkpoint_path = save_checkpoint(stage_dir / "model.safetensors", Checkpoint(
            model, input_checkpoint.model_spec, input_checkpoint.classes,
            measurer.input_size, {"stage": name, "details": details}))
        onnx_path = stage_dir / "model.onnx"
        if not onnx_path.is_file():  # an export stage writes its own (maybe FP16) file
            export_onnx(model, onnx_path, measurer.input_size,
                        classes=input_checkpoint.classes)
        previous = max((r for r in done.values() if r.status == "done" and r.index < index),
                       key=lambda r: r.index, default=None)
        record = measurer.measure(index, name, model, checkpoint_path, onnx_path,
                                  time.perf_counter() - started, details, done.get(0), previous)
        store.write_record(record)
        done[index] = record
        echo(format_row(record))
        if record.note:
            echo(f"note: stage {index}:{name}: {record.note}")
        if record.slower:
            echo(f"warning: stage {index}:{name} made batch-1 latency worse than stage "
                 f"{previous.index}:{previous.name} (timed interleaved)")
        if after_stage is not None:
            after_stage(record)
        return record

    model = input_checkpoint.model
    if 0 in done:
        echo(format_row(done[0]))
    else:
        started = time.perf_counter()
        finish(0, "input", model, started, {"checkpoint": recipe.checkpoint},
               _fresh_dir(store, 0, "input"))
    def resize_to(size: int) -> None:
        """Later stages and measurements work at `size` (after a resize stage)."""
        nonlocal data
        if size != measurer.input_size:
            data = None if data is None else resize_training_data(
                data, size, recipe.data.aug_train,
                {"n_select": recipe.data.n_select, "level": recipe.data.level}, recipe.seed)
            measurer.data, measurer.input_size = data, size

    for index, (name, stage) in enumerate(zip(recipe.stage_names(), stages), start=1):
        if index in done:
            echo(format_row(done[index]))
            if done[index].status == "done":
                resumed = load_checkpoint(done[index].checkpoint)
                model = resumed.model
                resize_to(resumed.input_size)
            continue
        if stage.needs_data() and data is None:
            previous = done[index - 1]
            record = replace(previous, index=index, name=name, status="skipped",
                             note="needs data", seconds=0.0, slower=False, details={})
            store.write_record(record)
            done[index] = record
            echo(f"skipped stage {index}:{name}: it needs data and none was found")
            continue
        stage_dir = store.stage_dir(index, name)
        ctx = StageContext(measurer.input_size, input_checkpoint.classes, device,
                           stage_dir, input_checkpoint.model_spec,
                           teacher=teacher, data=data, seed=recipe.seed, echo=echo)
        started = time.perf_counter()
        model = stage.apply(model, ctx)
        resize_to(ctx.input_size)
        finish(index, name, model, started, ctx.details, stage_dir)

    records = [done[i] for i in sorted(done)]
    paths = write_report(Path(out_dir), records, recipe.model_dump(mode="json"), notes)
    echo("report: " + ", ".join(str(p) for p in paths.values()))
    return records


def _fresh_dir(store: RunStore, index: int, name: str) -> Path:
    path = store.stage_dir(index, name)
    shutil.rmtree(path)
    return store.stage_dir(index, name)

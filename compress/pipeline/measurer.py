"""The one measurer a run's stages may ask (compress.stages.base.StageMeasurer): ONNX files
timed against each other, opened to evaluate, their top-1 classes, macro F1. What the
pipeline records after each stage (latency rows, metrics, score, floor) is
compress.pipeline.recorder's, on top of this one. A measurement never changes the model.

The runtime (compress.measure.runtime.choose_stage_runtime): ONNX Runtime on the CPU, or
OpenVINO's CPU plugin where the recipe's bench.runtime asks for it; on CUDA ONNX Runtime's
CUDA provider where onnxruntime-gpu loads, else the torch CUDA runner (FP16, channels-last,
CUDA graphs), which times the stages' checkpoints. What stages time among themselves (plan,
quantize, FP16 export) and evaluate are ONNX files, in `onnx_runtime`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from compress.checkpoint import Checkpoint
from compress.data.training_data import TrainingData, TrainingDataOptions, open_training_data
from compress.measure import timing_process
from compress.measure.latency import Comparison, InTurn
from compress.measure.metrics import classification_metrics, model_macro_f1
from compress.measure.runners import open_onnx_runner
from compress.measure.runtime import RuntimeChoice, choose_stage_runtime
from compress.recipe.schema import BenchSection, Recipe


def open_data(recipe: Recipe, checkpoint: Checkpoint) -> TrainingData | None:
    """Train and evaluation splits at the checkpoint's input size; None without a data folder."""
    if not Path(recipe.data.root).is_dir():
        return None
    data = recipe.data
    aug_train, aug_train_params = data.augmentation()
    return open_training_data(data.root, checkpoint.classes, checkpoint.input_size,
                              TrainingDataOptions(
                                  split=data.split, aug_train=aug_train,
                                  aug_train_params=aug_train_params,
                                  batch_size=data.batch_size, num_workers=data.num_workers,
                                  seed=recipe.seed, held_out=checkpoint.held_out_split,
                                  new_held_out=data.new_held_out, cache=data.cache))


@dataclass
class Measurer:
    """Times and evaluates ONNX files for the stages of one run; never changes a model.
    `data` and `input_size` follow the run (a resize stage changes both)."""

    bench: BenchSection
    data: TrainingData | None
    device: torch.device
    input_size: int
    runtime: RuntimeChoice | None = None  # what the stages are timed in; None: chosen here
    _timing_worker: timing_process.TimingWorker = field(
        default_factory=timing_process.TimingWorker, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.runtime is None:
            self.runtime = choose_stage_runtime(str(self.device), self.bench.runtime)

    @classmethod
    def for_recipe(cls, recipe: Recipe, data: TrainingData | None, device: torch.device,
                   input_size: int) -> Measurer:
        return cls(bench=recipe.bench, data=data, device=device, input_size=input_size)

    @property
    def provider(self) -> str:
        """ONNX Runtime's provider for the ONNX files stages time and evaluate: CUDA where
        the stages are timed in ONNX Runtime on CUDA, else the CPU."""
        return self.runtime.provider if self.runtime.runtime == "onnxruntime" else "cpu"

    @property
    def timed_in_torch(self) -> bool:
        return self.runtime.runtime == "torch"

    @property
    def onnx_runtime(self) -> RuntimeChoice:
        """What runs the ONNX files stages evaluate and time among themselves: OpenVINO
        where the stages are timed in it, else ONNX Runtime on `provider`."""
        return self.runtime if self.runtime.runtime == "openvino" else \
            RuntimeChoice("onnxruntime", str(self.device), self.provider)

    def runner(self, onnx_path: str | Path) -> Any:
        """The ONNX file opened in `onnx_runtime`, to evaluate it."""
        return open_onnx_runner(onnx_path, self.onnx_runtime.runtime, self.provider,
                                self.bench.threads)

    # Every timing runs in a process of its own: this one, after torch, data and exports,
    # timed small models up to 40 % slow (compress.measure.timing_process).
    def timed(self, jobs: list[timing_process.Job], runtime: RuntimeChoice | None = None
              ) -> list:
        """The jobs' results from the timing process, in `runtime` (default: the ONNX
        files' runtime, `onnx_runtime`)."""
        return self._timing_worker.run(jobs, runtime or self.onnx_runtime, self.bench.threads)

    def comparison(self, path_a: Path, path_b: Path, runs: int | None = None, batch: int = 1,
                   input_size_a: int | None = None) -> timing_process.Job:
        """A job timing two files interleaved, with the run's bench settings; `path_a` may
        take another input size (a stage before a resize)."""
        return timing_process.compare(path_a, path_b, input_size=input_size_a or self.input_size,
                                      batch=batch, warmup=self.bench.warmup,
                                      runs=runs or self.bench.runs, input_size_b=self.input_size)

    def close(self) -> None:
        """Ends the timing process, if one was started (a later timing starts another)."""
        self._timing_worker.close()

    def compare_files(self, path_a: Path, path_b: Path, runs: int | None = None,
                      batch: int = 1) -> Comparison:
        return self.timed([self.comparison(path_a, path_b, runs, batch)])[0]

    def time_in_turn(self, paths: list[Path], runs: int | None = None, batch: int = 1
                     ) -> InTurn:
        """How many times faster each ONNX file runs than the first, and each one's median
        ms (see compress.measure.latency.time_in_turn)."""
        return self.timed([timing_process.in_turn(paths, input_size=self.input_size,
                                                  batch=batch, warmup=self.bench.warmup,
                                                  runs=runs or self.bench.runs)])[0]

    def device_fingerprint(self) -> dict:
        """What a latency measured here depends on besides the model: CPU model and flags,
        threads, provider, GPU, library versions."""
        from compress.device import cpu_flags
        from compress.measure.machine import (
            cpu_model,
            gpu_description,
            library_versions,
            usable_cores,
        )

        # The runtime's default threads time otherwise than as many set explicitly (ONNX
        # Runtime's default sets its own thread affinity): they are not one fingerprint.
        return {"cpu": cpu_model(), "cpu_flags": sorted(cpu_flags()),
                "threads": self.bench.threads or f"default ({usable_cores()} cores)",
                "provider": self.provider,
                "runtime": self.runtime.runtime,
                "gpu": gpu_description(), "versions": library_versions()}

    def top1(self, path: Path, images: torch.Tensor) -> np.ndarray:
        runner = self.runner(path)
        return runner(runner.prepare(images.numpy())).argmax(1)

    def macro_f1(self, targets: np.ndarray, predictions: np.ndarray) -> float:
        return classification_metrics(targets, predictions, self.data.classes)["macro_f1"]

    def model_macro_f1(self, model: nn.Module, images: Dataset) -> float:
        return model_macro_f1(model, images, self.data.classes)

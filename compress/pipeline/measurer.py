"""The one place that measures a stage's model: latency (on the run's device in the
runtime it is deployed with, timed interleaved with the input), MACs, parameters, macro F1
and accuracy, and the competition score. A measurement never changes the model.

The runtime (compress.measure.runtime.choose_stage_runtime): ONNX Runtime on the CPU, or
OpenVINO's CPU plugin where the recipe's bench.runtime asks for it; on CUDA ONNX Runtime's
CUDA provider where onnxruntime-gpu loads, else the torch CUDA runner (FP16, channels-last,
CUDA graphs), which times the stages' checkpoints. What stages time among themselves (plan,
quantize, FP16 export) and evaluate are ONNX files, in `onnx_runtime`.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from compress.checkpoint import Checkpoint
from compress.data.folders import make_loader
from compress.data.training_data import TrainingData, TrainingDataOptions, open_training_data
from compress.errors import UserError
from compress.measure import timing_process
from compress.measure.end_to_end import predict_files
from compress.measure.latency import Comparison, InTurn, Latency
from compress.measure.macs import count_macs, count_params
from compress.measure.metrics import classification_metrics, model_macro_f1
from compress.measure.runners import open_onnx_runner
from compress.measure.runtime import RuntimeChoice, choose_stage_runtime
from compress.measure.score import ScoreConstants, competition_score
from compress.pipeline.runstore import StageRecord
from compress.recipe.schema import BenchSection, DataSection, Recipe, ScoreSection
from compress.stages.base import StageResult, StageStatus

# Flag a stage whose batch-1 latency grew by more than 10 %: interleaved ratios of a few
# hundred runs vary by about 6 % (CV) on the 2-core development VM, so 5 % flagged noise
# (seen: a stage that kept its input's file unchanged measured "slower").
SLOWER_TOLERANCE = 1.10
DEPLOYED_CHECK_IMAGES = 256


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
                                  seed=recipe.seed, held_out=checkpoint.held_out_files,
                                  cache=data.cache))


@dataclass
class Measurer:
    """Measures a stage's model and its ONNX file; never changes the model. Stages reach
    it as `ctx.measurer` (see compress.stages.base.StageMeasurer)."""

    bench: BenchSection
    score_settings: ScoreSection
    data_settings: DataSection
    data: TrainingData | None
    device: torch.device
    input_size: int
    _timing_worker: timing_process.TimingWorker = field(
        default_factory=timing_process.TimingWorker, init=False, repr=False)
    runtime: RuntimeChoice | None = None  # what the stages are timed in; None: chosen here

    def __post_init__(self) -> None:
        if self.runtime is None:
            self.runtime = choose_stage_runtime(str(self.device), self.bench.runtime)

    @classmethod
    def for_recipe(cls, recipe: Recipe, data: TrainingData | None, device: torch.device,
                   input_size: int) -> Measurer:
        return cls(recipe.bench, recipe.score, recipe.data, data, device, input_size)

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

    def runner(self, onnx_path: str | Path):
        """The ONNX file opened in `onnx_runtime`, to evaluate it."""
        return open_onnx_runner(onnx_path, self.onnx_runtime.runtime, self.provider,
                                self.bench.threads)

    # Every timing runs in a process of its own: this one, after torch, data and exports,
    # timed small models up to 40 % slow (compress.measure.timing_process).
    def _timed(self, jobs: list[timing_process.Job], in_stage_runtime: bool = False) -> list:
        """ONNX files in `onnx_runtime`; with `in_stage_runtime`, the files of the runtime
        the stages are timed in (checkpoints where that is torch)."""
        runtime = self.runtime if in_stage_runtime else self.onnx_runtime
        return self._timing_worker.run(jobs, runtime, self.bench.threads)

    def _timed_file(self, record: StageRecord) -> Path:
        """The file a stage is timed from: its checkpoint in torch, else its ONNX file."""
        return Path(record.checkpoint if self.timed_in_torch else record.onnx)

    def _compare(self, path_a: Path, path_b: Path, runs: int | None = None, batch: int = 1,
                 input_size_a: int | None = None) -> timing_process.Job:
        return timing_process.compare(path_a, path_b, input_size=input_size_a or self.input_size,
                                     batch=batch, warmup=self.bench.warmup,
                                     runs=runs or self.bench.runs, input_size_b=self.input_size)

    def _latency(self, path: Path, batch: int) -> timing_process.Job:
        return timing_process.latency(path, input_size=self.input_size, batch=batch,
                                     warmup=self.bench.warmup, runs=self.bench.runs)

    def close(self) -> None:
        """Ends the timing process, if one was started (a later timing starts another)."""
        self._timing_worker.close()

    def compare_files(self, path_a: Path, path_b: Path, runs: int | None = None,
                      batch: int = 1) -> Comparison:
        return self._timed([self._compare(path_a, path_b, runs, batch)])[0]

    def time_in_turn(self, paths: list[Path], runs: int | None = None, batch: int = 1
                     ) -> InTurn:
        """How many times faster each ONNX file runs than the first, and each one's median
        ms (see compress.measure.latency.time_in_turn)."""
        return self._timed([timing_process.in_turn(paths, input_size=self.input_size,
                                                  batch=batch, warmup=self.bench.warmup,
                                                  runs=runs or self.bench.runs)])[0]

    def runtimes_compared(self, record: StageRecord) -> dict | None:
        """The stage's ONNX file in each installed runtime of this CPU (ONNX Runtime, and
        OpenVINO where installed), timed in turn at batch 1: each one's median ms, speed-up
        over ONNX Runtime and top-1 agreement with it on up to DEPLOYED_CHECK_IMAGES
        evaluated images (None without data), and the fastest. None on a GPU run.
        OpenVINO runs only in the timing process: a quantisation in a process where it had
        run ended in a segmentation fault (OpenVINO 2026.4, torch 2.14)."""
        if self.device.type != "cpu":
            return None
        from compress.measure.openvino_runner import openvino_problem

        names, notes = ["onnxruntime"], []
        problem = openvino_problem(load=False)
        if problem:
            notes.append(problem)
        else:
            names.append("openvino")
        try:
            turn = self._runtimes_in_turn(record, names)
        except UserError as error:  # a file OpenVINO cannot take is a finding, not a failure
            notes.append(str(error))
            names = ["onnxruntime"]
            turn = self._runtimes_in_turn(record, names)
        agreement = self._top1_agreement(record.onnx, names)
        runtimes = {name: {"median_ms": ms, "speedup_vs_onnxruntime": ratio,
                           "top1_agreement_with_onnxruntime": agreed}
                    for name, ms, ratio, agreed in zip(names, turn.medians_ms, turn.ratios,
                                                       agreement)}
        fastest = max(names, key=lambda name: runtimes[name]["speedup_vs_onnxruntime"])
        return {"stage": f"{record.index}:{record.name}", "file": record.onnx,
                "runtimes": runtimes, "fastest": fastest, "notes": notes}

    def _runtimes_in_turn(self, record: StageRecord, runtimes: list[str]) -> InTurn:
        timing = timing_process.in_turn([record.onnx] * len(runtimes), runtimes=runtimes,
                                        input_size=record.input_size or self.input_size,
                                        batch=1, warmup=self.bench.warmup, runs=self.bench.runs)
        return self._timing_worker.run([timing], RuntimeChoice("onnxruntime", "cpu", "cpu"),
                                       self.bench.threads)[0]

    def _check_images(self) -> np.ndarray:
        """Up to DEPLOYED_CHECK_IMAGES evaluated images, in order (data required)."""
        loader = make_loader(self.data.val, self.data_settings.batch_size, shuffle=False,
                             num_workers=0)
        batches, seen = [], 0
        for images, _ in loader:
            batches.append(images[:DEPLOYED_CHECK_IMAGES - seen].numpy())
            seen += len(batches[-1])
            if seen >= DEPLOYED_CHECK_IMAGES:
                break
        return np.concatenate(batches)

    def _top1_agreement(self, onnx_path: str, runtimes: list[str]) -> list[float | None]:
        """Each runtime's share of evaluated images given the class ONNX Runtime gives, run
        in the timing process."""
        if self.data is None:
            return [None] * len(runtimes)
        with tempfile.TemporaryDirectory() as folder:
            images = Path(folder) / "images.npy"
            np.save(images, self._check_images())
            job = timing_process.classes([onnx_path] * len(runtimes), runtimes, images)
            found = self._timing_worker.run([job], RuntimeChoice("onnxruntime", "cpu", "cpu"),
                                            self.bench.threads)[0].per_runner
        expected = np.array(found[0])
        return [float((np.array(classes) == expected).mean()) for classes in found]

    def distance_to_floor(self, record: StageRecord) -> dict:
        """How far a stage's model is from what this device can do: its achieved GFLOP/s at
        batch 1 against the device's matrix-product peak, and where its time goes: per op
        type (ONNX Runtime's profiler), or, timed in torch, the launch floor (a one-kernel
        model timed the same way)."""
        achieved = 2 * record.macs / (record.latency_ms / 1000) / 1e9
        floor = {"stage": f"{record.index}:{record.name}", "gflops": achieved,
                 "runtime": record.provider}
        if self.timed_in_torch:
            from compress.measure.torch_runner import (
                deployed_precision,
                launch_floor_ms,
                matmul_peak_gflops,
            )

            device, precision = self.runtime.device, deployed_precision(self.runtime.device)
            floor |= {"peak_gflops": matmul_peak_gflops(device, precision),
                      "peak_kind": precision, "op_types": [],
                      "launch_floor_ms": launch_floor_ms(
                          device, len(self.data.classes) if self.data else 1,
                          record.input_size or self.input_size, precision,
                          warmup=self.bench.warmup, runs=self.bench.runs)}
        elif self.runtime.runtime == "openvino":  # ONNX Runtime's profile is not OpenVINO's
            from compress.measure.machine import peak_gflops

            floor |= {"peak_gflops": peak_gflops("cpu", self.bench.threads),
                      "peak_kind": "fp32", "op_types": []}
        else:
            from compress.measure.machine import peak_gflops
            from compress.measure.op_profile import op_type_profile

            profile = op_type_profile(record.onnx, record.input_size or self.input_size, 1,
                                      self.provider, self.bench.threads)
            floor |= {"peak_gflops": peak_gflops(self.provider, self.bench.threads),
                      "peak_kind": "fp32", "op_types": [asdict(row) for row in profile]}
        return floor | {"share_of_peak": achieved / floor["peak_gflops"]}

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

        return {"cpu": cpu_model(), "cpu_flags": sorted(cpu_flags()),
                "threads": self.bench.threads or usable_cores(), "provider": self.provider,
                "runtime": self.runtime.runtime,
                "gpu": gpu_description(), "versions": library_versions()}

    def top1(self, path: Path, images: torch.Tensor) -> np.ndarray:
        runner = self.runner(path)
        return runner(runner.prepare(images.numpy())).argmax(1)

    def macro_f1(self, targets: np.ndarray, predictions: np.ndarray) -> float:
        return classification_metrics(targets, predictions, self.data.classes)["macro_f1"]

    def model_macro_f1(self, model: nn.Module, images: Dataset) -> float:
        return model_macro_f1(model, images, self.data.classes)

    def metrics(self, onnx_path: Path, model: nn.Module | None = None
                ) -> tuple[dict | None, float | None]:
        """Macro F1 and accuracy of the ONNX file on the evaluated split, and with
        score.time end_to_end the wall time of predicting it image by image from the files
        (by `model` in its deployed torch form where the stages are timed in torch)."""
        if self.data is None:
            return None, None
        runner = self.runner(onnx_path)
        targets = np.array([label for _, label in self.data.val.samples])
        if self.score_settings.time == "end_to_end":
            files = [path for path, _ in self.data.val.samples]
            timed = self._deployed(model) if self.timed_in_torch and model is not None \
                else runner
            result = predict_files(timed, files, self.input_size, batch_size=1,
                                   workers=self.data_settings.num_workers)
            predictions, seconds = result.labels, result.seconds
        else:
            loader = make_loader(self.data.val, self.data_settings.batch_size, shuffle=False,
                                 num_workers=self.data_settings.num_workers)
            predictions = np.concatenate([runner(runner.prepare(images.numpy())).argmax(1)
                                          for images, _ in loader])
            seconds = None
        return classification_metrics(targets, predictions, self.data.classes), seconds

    def held_out_macro_f1(self, onnx_path: Path) -> float | None:
        """Macro F1 of the ONNX file on the train images held out of the input model's
        training; None where the checkpoint records none."""
        if self.data is None or self.data.calibration is None:
            return None
        runner = self.runner(onnx_path)
        loader = make_loader(self.data.calibration, self.data_settings.batch_size, shuffle=False,
                             num_workers=0)
        targets, predictions = zip(*[(labels.numpy(), runner(runner.prepare(images.numpy()))
                                      .argmax(1)) for images, labels in loader])
        return self.macro_f1(np.concatenate(targets), np.concatenate(predictions))

    def _latencies(self, timed_path: Path, baseline: StageRecord | None,
                   previous: StageRecord | None) -> tuple[dict[int, Latency], float, float]:
        """Latency at each bench batch size, and the batch-1 speed-up over the input and over
        the previous stage, all in one request to the timing worker; `timed_path` is the
        stage's file in the runtime the stages are timed in.

        Both ratios come from interleaved timing (A B A B ...), so a busy machine slows
        both models alike instead of flagging the wrong stage."""
        timing = [self._latency(timed_path, 1)] if baseline is None else [
            self._compare(self._timed_file(baseline), timed_path,
                          input_size_a=baseline.input_size)]
        against_previous = baseline is not None and previous is not None and previous.index != 0
        if against_previous:
            timing.append(self._compare(self._timed_file(previous), timed_path,
                                        input_size_a=previous.input_size))
        batches = self.bench.batch_sizes[1:]
        results = self._timed(timing + [self._latency(timed_path, b) for b in batches],
                              in_stage_runtime=True)
        if baseline is None:
            one, speedup, vs_previous = results[0], 1.0, 1.0
        else:
            one, speedup = results[0].b, results[0].ratio
            vs_previous = results[1].ratio if against_previous else speedup
        return {1: one} | dict(zip(batches, results[len(timing):])), speedup, vs_previous

    def measure(self, index: int, name: str, model: nn.Module, checkpoint_path: Path,
                onnx_path: Path, seconds: float, result: StageResult,
                baseline: StageRecord | None, previous: StageRecord | None) -> StageRecord:
        latencies, speedup, vs_previous = self._latencies(
            checkpoint_path if self.timed_in_torch else onnx_path, baseline, previous)
        one = latencies[1]
        metrics, end_to_end_s = self.metrics(onnx_path, model)
        record = StageRecord(
            index=index, name=name, status=StageStatus.DONE, note=result.note,
            params=count_params(model),
            macs=count_macs(model, self.input_size), latency_ms=one.median_ms,
            latency_p90_ms=one.p90_ms, speedup_vs_input=speedup,
            latency_by_batch={str(b): {"median_ms": l.median_ms, "p90_ms": l.p90_ms,
                                       "images_per_s": 1000 * b / l.median_ms}
                              for b, l in latencies.items()},
            provider=one.provider,
            macro_f1=None if metrics is None else metrics["macro_f1"],
            accuracy=None if metrics is None else metrics["accuracy"],
            score=None, seconds=seconds, checkpoint=str(checkpoint_path), onnx=str(onnx_path),
            slower=vs_previous * SLOWER_TOLERANCE < 1.0, result=result.to_dict(),
            end_to_end_s=end_to_end_s, input_size=self.input_size,
            held_out_macro_f1=self.held_out_macro_f1(onnx_path),
            deployed_top1_agreement=self.deployed_top1_agreement(model, onnx_path))
        return replace(record, score=self.score(record, baseline or record))

    def _deployed(self, model: nn.Module):
        """A copy of `model` in the torch form the stages are timed in."""
        from compress.measure.torch_runner import TorchRunner

        return TorchRunner.open(copy.deepcopy(model), self.runtime.device)

    def deployed_top1_agreement(self, model: nn.Module, onnx_path: Path) -> float | None:
        """Where the stages are timed in torch: the share of up to DEPLOYED_CHECK_IMAGES
        evaluated images on which the timed form (FP16, CUDA graphs on a GPU) and the
        float32 ONNX file agree on the class; None elsewhere or without data."""
        if not self.timed_in_torch or self.data is None:
            return None
        deployed = self._deployed(model)
        onnx = self.runner(onnx_path)
        images = self._check_images()
        expected = np.concatenate([onnx(onnx.prepare(images[start:start + 64])).argmax(1)
                                   for start in range(0, len(images), 64)])
        found = np.concatenate([deployed(deployed.prepare(images[start:start + 64])).float()
                                .numpy().argmax(1) for start in range(0, len(images), 64)])
        return float((found == expected).mean())

    def score(self, record: StageRecord, baseline: StageRecord) -> float | None:
        s = self.score_settings
        baseline_f1 = s.baseline_f1 if s.baseline_f1 is not None else baseline.macro_f1
        if record.macro_f1 is None or baseline_f1 is None:
            return None
        constants = ScoreConstants(s.formula, s.time_weight, s.f1_slope, s.f1_floor,
                                   s.f1_floor_term)
        if s.time == "end_to_end":
            time = record.end_to_end_s * 1000
            baseline_time = s.baseline_time_ms or baseline.end_to_end_s * 1000
        elif s.baseline_time_ms:
            time, baseline_time = record.latency_ms, s.baseline_time_ms
        else:  # the time ratio is the interleaved batch-1 speed-up over the input
            time, baseline_time = 1.0, record.speedup_vs_input
        return competition_score(record.macro_f1, baseline_f1, constants, time=time,
                                 baseline_time=baseline_time, macs=record.macs,
                                 baseline_macs=s.baseline_macs or baseline.macs)

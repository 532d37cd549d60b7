"""What the pipeline records after every stage: the stage's latency at each bench batch
(timed interleaved with the input and the previous stage), MACs, parameters, macro F1 and
accuracy, the competition score; after the last stage, its distance to the device's floor
and its speed in every installed runtime. Built on the run's one Measurer, which the stages
share: one timing process, one runtime choice.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from torch import nn

from compress.data.folders import make_loader
from compress.data.training_data import TrainingData
from compress.measure import timing_process
from compress.measure.end_to_end import predict_files
from compress.measure.latency import Latency
from compress.measure.macs import count_macs, count_params
from compress.measure.metrics import classification_metrics
from compress.measure.score import ScoreConstants, competition_score
from compress.pipeline.measurer import Measurer
from compress.pipeline.runstore import StageRecord
from compress.recipe.schema import DataSection, ScoreSection
from compress.stages.base import StageResult, StageStatus

# Flag a stage whose batch-1 latency grew by more than 10 %: interleaved ratios of a few
# hundred runs vary by about 6 % (CV) on the 2-core development VM, so 5 % flagged noise
# (seen: a stage that kept its input's file unchanged measured "slower").
SLOWER_TOLERANCE = 1.10
DEPLOYED_CHECK_IMAGES = 256


@dataclass(frozen=True)
class SavedStage:
    """A stage's model as the pipeline saved it, what to measure."""

    index: int
    name: str
    model: nn.Module
    checkpoint: Path
    onnx: Path
    seconds: float  # the stage's own time
    result: StageResult


@dataclass
class StageRecorder:
    """Turns a saved stage into its StageRecord; never changes the model."""

    measurer: Measurer
    score_settings: ScoreSection
    data_settings: DataSection

    @property
    def _bench(self):
        return self.measurer.bench

    def record(self, stage: SavedStage, baseline: StageRecord | None,
               previous: StageRecord | None) -> StageRecord:
        """The stage's record; `baseline` is the run's input (None for the input itself),
        `previous` the last stage that ran before it."""
        m = self.measurer
        same = previous if previous is not None and previous.input_size == m.input_size \
            and not m.timed_in_torch and same_graph(Path(previous.onnx), stage.onnx) else None
        if same is not None:
            latencies = {int(batch): Latency(int(batch), timed["median_ms"], timed["p90_ms"],
                                             runs=0, provider=same.provider,
                                             p10_ms=timed.get("p10_ms", 0.0),
                                             disturbed=same.timing_disturbed)
                         for batch, timed in same.latency_by_batch.items()}
            speedup, vs_previous, spread = same.speedup_vs_input, 1.0, same.speedup_spread
        else:
            latencies, speedup, vs_previous, spread = self._latencies(
                stage.checkpoint if m.timed_in_torch else stage.onnx, baseline, previous)
        one = latencies[1]
        metrics, end_to_end_s = self.metrics(stage.onnx, stage.model)
        note = stage.result.note if same is None else "; ".join(filter(None, [
            stage.result.note, f"the same ONNX graph as stage {same.index}: its timing kept"]))
        record = StageRecord(
            index=stage.index, name=stage.name, status=StageStatus.DONE, note=note,
            timing_from=None if same is None else same.index, params=count_params(stage.model),
            macs=count_macs(stage.model, m.input_size), latency_ms=one.median_ms,
            latency_p90_ms=one.p90_ms, speedup_vs_input=speedup,
            latency_by_batch={str(batch): {"p10_ms": timed.p10_ms, "median_ms": timed.median_ms,
                                           "p90_ms": timed.p90_ms,
                                           "images_per_s": 1000 * batch / timed.median_ms}
                              for batch, timed in latencies.items()},
            speedup_spread=spread,
            timing_disturbed=any(timed.disturbed for timed in latencies.values()),
            provider=one.provider,
            macro_f1=None if metrics is None else metrics["macro_f1"],
            accuracy=None if metrics is None else metrics["accuracy"],
            score=None, seconds=stage.seconds, checkpoint=str(stage.checkpoint),
            onnx=str(stage.onnx), slower=vs_previous * SLOWER_TOLERANCE < 1.0,
            result=stage.result.to_dict(), end_to_end_s=end_to_end_s,
            input_size=m.input_size, held_out_macro_f1=self.held_out_macro_f1(stage.onnx),
            deployed_top1_agreement=self.deployed_top1_agreement(stage.model, stage.onnx))
        return replace(record, score=self.score(record, baseline or record))

    def _timed_file(self, record: StageRecord) -> Path:
        """The file a stage is timed from: its checkpoint in torch, else its ONNX file."""
        return Path(record.checkpoint if self.measurer.timed_in_torch else record.onnx)

    def _latency(self, path: Path, batch: int) -> timing_process.Job:
        return timing_process.latency(path, input_size=self.measurer.input_size, batch=batch,
                                      warmup=self._bench.warmup, runs=self._bench.runs)

    def _latencies(self, timed_path: Path, baseline: StageRecord | None,
                   previous: StageRecord | None
                   ) -> tuple[dict[int, Latency], float, float, list[float] | None]:
        """Latency at each bench batch size, and the batch-1 speed-up over the input (with
        its p10 and p90 over cycles) and over the previous stage, all in one request to the
        timing worker; `timed_path` is the stage's file in the runtime the stages are timed
        in.

        Both ratios come from interleaved timing (A B A B ...), so a busy machine slows
        both models alike instead of flagging the wrong stage."""
        m = self.measurer
        timing = [self._latency(timed_path, 1)] if baseline is None else [
            m.comparison(self._timed_file(baseline), timed_path,
                         input_size_a=baseline.input_size)]
        against_previous = baseline is not None and previous is not None and previous.index != 0
        if against_previous:
            timing.append(m.comparison(self._timed_file(previous), timed_path,
                                       input_size_a=previous.input_size))
        batches = self._bench.batch_sizes[1:]
        results = m.timed(timing + [self._latency(timed_path, b) for b in batches],
                          runtime=m.runtime)
        if baseline is None:
            one, speedup, vs_previous, spread = results[0], 1.0, 1.0, None
        else:
            compared = results[0]
            one, speedup = replace(compared.b, disturbed=compared.disturbed), compared.ratio
            spread = [compared.ratio_p10, compared.ratio_p90]
            vs_previous = results[1].ratio if against_previous else speedup
        return {1: one} | dict(zip(batches, results[len(timing):])), speedup, vs_previous, spread

    def metrics(self, onnx_path: Path, model: nn.Module | None = None
                ) -> tuple[dict | None, float | None]:
        """Macro F1 and accuracy of the ONNX file on the evaluated split, and with
        score.time end_to_end the wall time of predicting it image by image from the files
        (by `model` in its deployed torch form where the stages are timed in torch)."""
        m = self.measurer
        if m.data is None:
            return None, None
        runner = m.runner(onnx_path)
        targets = np.array([label for _, label in m.data.val.samples])
        if self.score_settings.time == "end_to_end":
            files = [path for path, _ in m.data.val.samples]
            timed = self._deployed(model) if m.timed_in_torch and model is not None \
                else runner
            result = predict_files(timed, files, m.input_size, batch_size=1,
                                   workers=self.data_settings.num_workers)
            predictions, seconds = result.labels, result.seconds
        else:
            loader = make_loader(m.data.val, self.data_settings.batch_size, shuffle=False,
                                 num_workers=self.data_settings.num_workers)
            predictions = np.concatenate([runner(runner.prepare(images.numpy())).argmax(1)
                                          for images, _ in loader])
            seconds = None
        return classification_metrics(targets, predictions, m.data.classes), seconds

    def held_out_macro_f1(self, onnx_path: Path) -> float | None:
        """Macro F1 of the ONNX file on the train images held out of the input model's
        training; None where the checkpoint records none."""
        m = self.measurer
        if m.data is None or m.data.calibration is None:
            return None
        runner = m.runner(onnx_path)
        loader = make_loader(m.data.calibration, self.data_settings.batch_size, shuffle=False,
                             num_workers=0)
        targets, predictions = zip(*[(labels.numpy(), runner(runner.prepare(images.numpy()))
                                      .argmax(1)) for images, labels in loader])
        return m.macro_f1(np.concatenate(targets), np.concatenate(predictions))

    def _deployed(self, model: nn.Module):
        """A copy of `model` in the torch form the stages are timed in."""
        from compress.measure.torch_runner import TorchRunner

        return TorchRunner.open(copy.deepcopy(model), self.measurer.runtime.device)

    def deployed_top1_agreement(self, model: nn.Module, onnx_path: Path) -> float | None:
        """Where the stages are timed in torch: the share of up to DEPLOYED_CHECK_IMAGES
        evaluated images on which the timed form (FP16, CUDA graphs on a GPU) and the
        float32 ONNX file agree on the class; None elsewhere or without data."""
        if not self.measurer.timed_in_torch or self.measurer.data is None:
            return None
        deployed = self._deployed(model)
        onnx = self.measurer.runner(onnx_path)
        images = check_images(self.measurer.data, self.data_settings.batch_size)
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
            time_ratio = record.end_to_end_s * 1000 / (
                s.baseline_time_ms or baseline.end_to_end_s * 1000)
        elif s.baseline_time_ms:
            time_ratio = record.latency_ms / s.baseline_time_ms
        else:  # the input's time over this stage's: the interleaved batch-1 speed-up
            time_ratio = 1.0 / record.speedup_vs_input
        return competition_score(record.macro_f1, baseline_f1, constants,
                                 time_ratio=time_ratio,
                                 macs_ratio=record.macs / (s.baseline_macs or baseline.macs))


def same_graph(a: Path, b: Path) -> bool:
    """Whether two ONNX files hold the same graph: the same nodes, weights, inputs and
    outputs (the file's producer, doc strings and metadata aside)."""
    import onnx

    if not (a.is_file() and b.is_file()):
        return False
    if a.read_bytes() == b.read_bytes():
        return True
    graphs = [onnx.load(str(path), load_external_data=False).graph for path in (a, b)]
    for graph in graphs:
        graph.ClearField("doc_string")
        graph.ClearField("name")
    return graphs[0].SerializeToString() == graphs[1].SerializeToString()


def check_images(data: TrainingData, batch_size: int) -> np.ndarray:
    """Up to DEPLOYED_CHECK_IMAGES evaluated images, in order: what the forms of one model
    are compared on."""
    loader = make_loader(data.val, batch_size, shuffle=False, num_workers=0)
    batches, seen = [], 0
    for images, _ in loader:
        batches.append(images[:DEPLOYED_CHECK_IMAGES - seen].numpy())
        seen += len(batches[-1])
        if seen >= DEPLOYED_CHECK_IMAGES:
            break
    return np.concatenate(batches)

"""Figures of a run's final model that no single stage needs: how far it is from what the
device can do (achieved GFLOP/s against the peak, where its time goes), and its speed and
top-1 agreement in every runtime installed on this CPU. Written into the report.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from compress.errors import UserError
from compress.measure import timing_process
from compress.measure.latency import InTurn
from compress.measure.runtime import RuntimeChoice
from compress.pipeline.measurer import Measurer
from compress.pipeline.recorder import check_images
from compress.pipeline.runstore import StageRecord

# Runtimes are compared with each other in the timing process, on the CPU.
CPU_ONNX_RUNTIME = RuntimeChoice("onnxruntime", "cpu", "cpu")


@dataclass
class FinalModelFigures:
    """Measured through the run's measurer, after its last stage."""

    measurer: Measurer
    batch_size: int  # of the evaluated images' loader

    def runtimes_compared(self, record: StageRecord) -> dict | None:
        """The stage's ONNX file in each installed runtime of this CPU (ONNX Runtime, and
        OpenVINO where installed), timed in turn at batch 1: each one's median ms, speed-up
        over ONNX Runtime and top-1 agreement with it on up to DEPLOYED_CHECK_IMAGES
        evaluated images (None without data), and the fastest. None on a GPU run.
        OpenVINO runs only in the timing process: a quantisation in a process where it had
        run ended in a segmentation fault (OpenVINO 2026.4, torch 2.14)."""
        if self.measurer.device.type != "cpu":
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
                                        input_size=record.input_size or self.measurer.input_size,
                                        batch=1, warmup=self.measurer.bench.warmup,
                                        runs=self.measurer.bench.runs)
        return self.measurer.timed([timing], CPU_ONNX_RUNTIME)[0]

    def _top1_agreement(self, onnx_path: str, runtimes: list[str]) -> list[float | None]:
        """Each runtime's share of evaluated images given the class ONNX Runtime gives, run
        in the timing process."""
        if self.measurer.data is None:
            return [None] * len(runtimes)
        with tempfile.TemporaryDirectory() as folder:
            images = Path(folder) / "images.npy"
            np.save(images, check_images(self.measurer.data, self.batch_size))
            job = timing_process.classes([onnx_path] * len(runtimes), runtimes, images)
            found = self.measurer.timed([job], CPU_ONNX_RUNTIME)[0].per_runner
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
        m = self.measurer
        if m.timed_in_torch:
            from compress.measure.torch_runner import (
                deployed_precision,
                launch_floor_ms,
                matmul_peak_gflops,
            )

            device, precision = m.runtime.device, deployed_precision(m.runtime.device)
            floor |= {"peak_gflops": matmul_peak_gflops(device, precision),
                      "peak_kind": precision, "op_types": [],
                      "launch_floor_ms": launch_floor_ms(
                          device, len(m.data.classes) if m.data else 1,
                          record.input_size or m.input_size, precision,
                          warmup=m.bench.warmup, runs=m.bench.runs)}
        elif m.runtime.runtime == "openvino":  # ONNX Runtime's profile is not OpenVINO's
            from compress.measure.machine import peak_gflops

            floor |= {"peak_gflops": peak_gflops("cpu", m.bench.threads),
                      "peak_kind": "fp32", "op_types": []}
        else:
            from compress.measure.machine import peak_gflops
            from compress.measure.op_profile import op_type_profile

            profile = op_type_profile(record.onnx, record.input_size or m.input_size, 1,
                                      m.provider, m.bench.threads)
            floor |= {"peak_gflops": peak_gflops(m.provider, m.bench.threads),
                      "peak_kind": "fp32", "op_types": [asdict(row) for row in profile]}
        return floor | {"share_of_peak": achieved / floor["peak_gflops"]}

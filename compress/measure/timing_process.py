"""Latency timed in a process of its own that only ever runs the deployed model (ONNX
Runtime or OpenVINO, or torch where a run's stages are timed in torch), the way a deployed model and
compress retime run it.

Why: the pipeline's process times ONNX models slower than a fresh one, and small models more
so. In a plan's process (torch, decoded images, hundreds of exports and ONNX Runtime
sessions) a 5x model ran in 0.36-0.54 ms where a fresh process, seconds later on the same
files, ran it in 0.31-0.35 ms; its speed-up over the baseline read up to 20 % low, so plans
confirmed at 5x re-timed at 5.2-6.6x and gave up accuracy for speed nobody asked for
(benchmarks/RESULTS.md, "Latency stability and timing method", 2026-11-30, "the pipeline's
own process timed small models slow"). Torch inference, ONNX exports and a GiB of tensors in
a process each moved it by 8 % at most; the cause is not found. A process that only creates
sessions and times them did not drift (6.3-7.3x over 120 turns against 5.8-6.5x from fresh
processes), so one worker serves a whole run: started on the first timing (about 0.5 s, no
torch imported), fed one JSON request a line on stdin, gone when its parent closes it or
exits (its stdin closes)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compress.errors import UserError
from compress.measure.latency import (
    Comparison,
    InTurn,
    Latency,
    compare_latency,
    measure_latency,
    time_in_turn,
)
from compress.measure.runtime import RuntimeChoice


@dataclass
class Classes:
    """Each runner's top-1 class of every image, in order."""

    per_runner: list[list[int]]


def top1_classes(runners: list[Any], images: str, chunk: int = 32) -> Classes:
    """Every runner's classes of the images saved at `images` (an .npy batch), fed `chunk`
    at a time (or the runner's fixed batch)."""
    batch = np.load(images)
    per_runner = []
    for runner in runners:
        size = runner.fixed_batch() or chunk
        per_runner.append([int(c) for start in range(0, len(batch), size) for c in
                           runner(runner.prepare(batch[start:start + size])).argmax(1)])
    return Classes(per_runner)


KINDS = {"compare": (compare_latency, Comparison), "in_turn": (time_in_turn, InTurn),
         "latency": (measure_latency, Latency), "classes": (top1_classes, Classes)}


@dataclass(frozen=True)
class Job:
    """One timing: `kind` names the function of compress.measure.latency (compare:
    compare_latency of A against B; in_turn: time_in_turn; latency: measure_latency of one
    file; or classes: top1_classes, no timing), `timing` its keyword arguments besides the runners; `runtimes`, where given, the
    runtime of each path (onnxruntime or openvino, the same file in several), else all run in
    the request's runtime."""

    kind: str
    paths: list[str]
    timing: dict
    runtimes: list[str] | None = None


def compare(path_a: str | Path, path_b: str | Path, **timing: Any) -> Job:
    return Job("compare", _absolute([path_a, path_b]), timing)


def in_turn(paths: list, runtimes: list[str] | None = None, **timing: Any) -> Job:
    return Job("in_turn", _absolute(paths), timing, runtimes)


def latency(path: str | Path, **timing: Any) -> Job:
    return Job("latency", _absolute([path]), timing)


def classes(paths: list, runtimes: list[str], images: str | Path) -> Job:
    """Each file's top-1 classes of the images in the .npy file `images`, in its runtime:
    OpenVINO's outputs checked without loading it in the caller's process."""
    return Job("classes", _absolute(paths), {"images": _absolute([images])[0]}, runtimes)


def _absolute(paths: list) -> list[str]:
    """The worker keeps the working folder it started in; its parent may have moved since."""
    return [str(Path(p).resolve()) for p in paths]


class TimingWorker:
    """The process every timing of one measurer runs in; started on first use."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None

    def run(self, jobs: list[Job], runtime: RuntimeChoice, threads: int | None) -> list[Any]:
        """Each job's result (a Comparison, InTurn or Latency), timed one after another:
        ONNX files in ONNX Runtime or OpenVINO, or checkpoints in torch (`runtime`)."""
        request = {"jobs": [asdict(job) for job in jobs], "runtime": asdict(runtime),
                   "threads": threads}
        process = self._started()
        try:
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
            line = process.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            self.close()
            raise RuntimeError(f"the timing process for {[job.paths for job in jobs]} ended "
                               "without an answer (its error, if any, is above)")
        reply = json.loads(line)
        if "error" in reply:
            if reply["user_error"]:
                raise UserError(reply["error"])
            # A bug in the worker: its own traceback is the one that shows where.
            raise RuntimeError(f"{reply['error']}\nin the timing process:\n"
                               f"{reply['traceback'].rstrip()}")
        return [_result(job.kind, result) for job, result in zip(jobs, reply["results"])]

    def close(self) -> None:
        if self._process is not None:
            self._process.stdin.close()
            self._process.wait()
            self._process = None

    def _started(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen([sys.executable, "-m", __name__], text=True,
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        return self._process


def _result(kind: str, reply: dict) -> Any:
    if kind == "compare":
        return Comparison(**reply | {"a": Latency(**reply["a"]), "b": Latency(**reply["b"])})
    return KINDS[kind][1](**reply)


def _open_runner(path: str, runtime: RuntimeChoice, threads: int | None) -> Any:
    if runtime.runtime == "torch":  # imported here only: ONNX timings stay torch-free
        import torch

        from compress.checkpoint import load_checkpoint
        from compress.measure.torch_runner import TorchRunner

        if threads:
            torch.set_num_threads(threads)
        return TorchRunner.open(load_checkpoint(path).model, runtime.device)
    from compress.measure.runners import open_onnx_runner

    return open_onnx_runner(path, runtime.runtime, runtime.provider, threads)


def _serve(request: dict) -> list[dict]:
    runtime = RuntimeChoice(**request["runtime"])
    replies = []
    for job in request["jobs"]:
        runtimes = [runtime if name is None else RuntimeChoice(name, runtime.device,
                                                              runtime.provider)
                    for name in job.get("runtimes") or [None] * len(job["paths"])]
        runners = [_open_runner(path, in_runtime, request["threads"])
                   for path, in_runtime in zip(job["paths"], runtimes)]
        timed = KINDS[job["kind"]][0]
        result = timed(runners, **job["timing"]) if job["kind"] in ("in_turn", "classes") \
            else timed(*runners, **job["timing"])
        replies.append(asdict(result))
        del runners  # one job's sessions and their threads are gone before the next starts
    return replies


def _serve_forever() -> None:
    import traceback

    for line in sys.stdin:
        try:
            print(json.dumps({"results": _serve(json.loads(line))}), flush=True)
        except UserError as error:  # the parent raises it as one line
            print(json.dumps({"error": str(error), "user_error": True}), flush=True)
        except Exception as error:  # answered, so the parent raises it and the worker lives on
            print(json.dumps({"error": f"{type(error).__name__}: {error}", "user_error": False,
                              "traceback": traceback.format_exc()}), flush=True)


if __name__ == "__main__":
    _serve_forever()

"""Latency timed in a fresh process of its own, the way a deployed model and
benchmarks/retime.py run it.

Why: a long-lived pipeline process times ONNX models slower than a fresh one, and small
models more so. In a plan's process (torch, decoded images, hundreds of exports and
sessions) a 5x model ran in 0.40-0.54 ms where a fresh process, seconds later on the same
files, ran it in 0.31-0.34 ms; its speed-up over the baseline read up to 20 % low, so plans
confirmed at 5x re-timed at 5.2-6.6x and gave up accuracy for speed nobody asked for
(benchmarks/RESULTS.md, ninth session). Torch inference, ONNX exports, gc and a GiB of
tensors in the process each moved it by 8 % at most; the cause is not found, so every
timing the pipeline decides or reports on runs here instead. A start costs about 0.5 s
(no torch is imported).

    python -m compress.measure.fresh_process   (a JSON request on stdin, used by the above)
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from compress.errors import UserError
from compress.measure.latency import (
    Comparison,
    InTurn,
    Latency,
    compare_latency,
    measure_latency,
    time_in_turn,
)

USER_ERROR_EXIT = 2
KINDS = {"compare": (compare_latency, Comparison), "in_turn": (time_in_turn, InTurn),
         "latency": (measure_latency, Latency)}


@dataclass(frozen=True)
class Job:
    """One timing: `kind` names the function of compress.measure.latency (compare:
    compare_latency of A against B; in_turn: time_in_turn; latency: measure_latency of one
    file), `timing` its keyword arguments besides the runners."""

    kind: str
    paths: list[str]
    timing: dict


def compare(path_a: str | Path, path_b: str | Path, **timing: Any) -> Job:
    return Job("compare", [str(path_a), str(path_b)], timing)


def in_turn(paths: list, **timing: Any) -> Job:
    return Job("in_turn", [str(p) for p in paths], timing)


def latency(path: str | Path, **timing: Any) -> Job:
    return Job("latency", [str(path)], timing)


def run(jobs: list[Job], provider: str, threads: int | None) -> list[Any]:
    """Each job's result (a Comparison, InTurn or Latency), timed one after another in one
    fresh process: one start for a stage's several timings."""
    request = {"jobs": [asdict(job) for job in jobs], "provider": provider,
               "threads": threads}
    done = subprocess.run([sys.executable, "-m", __name__], input=json.dumps(request),
                          capture_output=True, text=True)
    if done.returncode == USER_ERROR_EXIT:
        raise UserError(done.stderr.strip().removeprefix("error: "))
    if done.returncode != 0:
        raise RuntimeError(f"the timing process for {[job.paths for job in jobs]} failed "
                           f"(exit {done.returncode}): {done.stderr[-2000:]}")
    return [_result(job.kind, reply) for job, reply in zip(jobs, json.loads(done.stdout))]


def _result(kind: str, reply: dict) -> Any:
    if kind == "compare":
        return Comparison(Latency(**reply["a"]), Latency(**reply["b"]), reply["ratio"])
    return KINDS[kind][1](**reply)


def _serve(request: dict) -> list[dict]:
    from compress.measure.runners import OrtRunner

    replies = []
    for job in request["jobs"]:
        runners = [OrtRunner.open(path, request["provider"], request["threads"])
                   for path in job["paths"]]
        timed = KINDS[job["kind"]][0]
        result = timed(runners, **job["timing"]) if job["kind"] == "in_turn" else \
            timed(*runners, **job["timing"])
        replies.append(asdict(result))
        del runners  # one job's sessions and their threads are gone before the next starts
    return replies


if __name__ == "__main__":
    try:
        print(json.dumps(_serve(json.load(sys.stdin))))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)

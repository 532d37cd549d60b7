"""How far apart two timings of the same planned model read, against the baseline, at the
plan's length of a whole-model timing and at longer ones: the plan decides on such timings
(compress.planning.timing, WHOLE_MODEL_FACTOR x timing_runs runs each), so their spread
bounds how close to its budget it can steer.

    python benchmarks/plan_timing_noise.py [--repeats 8] [--runs 300,3000]
                                           [--threads default,1,2]
                                           [--reference CKPT] [--model CKPT]

Both checkpoints are exported to ONNX and timed two in turn (reference first), each timing
in a timing process of its own (the plan keeps one for all of its timings); the lengths and
the intra-op thread counts alternate (300, 3000, 300, 3000, ...) so a drift of the machine
touches all alike. `default` is the runtime's own choice (ONNX Runtime: one thread per
physical core, pinned), which the recipes use unless their bench.threads says otherwise. Defaults: the shipped baseline against the
shipped plan of the main recipe (checkpoints/mnv3_small_latency_plan.safetensors).
Output, on stdout: each timing's speed-up (median of per-cycle ratios) and both models'
median latency, then per length and thread count the median, the spread max/min and the
coefficient of variation of the speed-ups.
Run time on the 2-core VM: about 8 minutes at the defaults (2026-12-07, AMD EPYC without
AVX-512). Nothing else heavy beside it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    from compress import export_onnx, load_checkpoint, time_files_in_turn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8, help="timings per length")
    parser.add_argument("--runs", default="300,3000", help="comma-separated runs per timing")
    parser.add_argument("--threads", default="default",
                        help="comma-separated intra-op thread counts; default: the runtime's")
    parser.add_argument("--reference", default=str(REPO / "checkpoints/mnv3_trashnet.safetensors"))
    parser.add_argument("--model",
                        default=str(REPO / "checkpoints/mnv3_small_latency_plan.safetensors"))
    args = parser.parse_args()
    lengths = [int(r) for r in args.runs.split(",")]
    thread_counts = [None if t.strip() == "default" else int(t) for t in args.threads.split(",")]
    settings = [(runs, threads) for runs in lengths for threads in thread_counts]
    speedups: dict[tuple, list[float]] = {setting: [] for setting in settings}
    with tempfile.TemporaryDirectory() as tmp:
        paths, size = [], None
        for name, checkpoint in (("reference", args.reference), ("model", args.model)):
            loaded = load_checkpoint(checkpoint)
            size = loaded.input_size
            paths.append(export_onnx(loaded.model.eval(), Path(tmp) / f"{name}.onnx", size))
        for repeat in range(args.repeats):
            for runs, threads in settings:
                timed = time_files_in_turn(paths, input_size=size, batch=1, warmup=20,
                                           runs=runs, threads=threads)
                speedups[runs, threads].append(timed.ratios[1])
                print(f"repeat {repeat + 1}, {runs} runs, {_threads(threads)}: "
                      f"{timed.ratios[1]:.2f}x (reference {timed.medians_ms[0]:.2f} ms, model "
                      f"{timed.medians_ms[1]:.3f} ms){' (disturbed)' if timed.disturbed else ''}",
                      flush=True)
    for (runs, threads), values in speedups.items():
        print(f"{runs} runs, {_threads(threads)}: median {statistics.median(values):.2f}x, max/min "
              f"{max(values) / min(values):.2f}, CV {statistics.stdev(values) / statistics.mean(values):.1%}")


def _threads(threads: int | None) -> str:
    return "default threads" if threads is None else f"{threads} thread(s)"


if __name__ == "__main__":
    main()

"""How far apart two timings of the same planned model read, against the baseline, at the
plan's length of a whole-model timing and at longer ones: the plan decides on such timings
(compress.planning.timing, WHOLE_MODEL_FACTOR x timing_runs runs each), so their spread
bounds how close to its budget it can steer.

    python benchmarks/plan_timing_noise.py [--repeats 8] [--runs 300,3000]
                                           [--reference CKPT] [--model CKPT]

Both checkpoints are exported to ONNX and timed two in turn (reference first), each timing
in a timing process of its own (the plan keeps one for all of its timings); the lengths
alternate (300, 3000, 300, 3000, ...) so a drift of the machine touches both alike. Defaults: the shipped baseline against the
shipped plan of the main recipe (checkpoints/mnv3_small_latency_plan.safetensors).
Output, on stdout: each timing's speed-up (median of per-cycle ratios), then per length
the median, the spread max/min and the coefficient of variation of the speed-ups.
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
    parser.add_argument("--reference", default=str(REPO / "checkpoints/mnv3_trashnet.safetensors"))
    parser.add_argument("--model",
                        default=str(REPO / "checkpoints/mnv3_small_latency_plan.safetensors"))
    args = parser.parse_args()
    lengths = [int(r) for r in args.runs.split(",")]
    speedups: dict[int, list[float]] = {runs: [] for runs in lengths}
    with tempfile.TemporaryDirectory() as tmp:
        paths, size = [], None
        for name, checkpoint in (("reference", args.reference), ("model", args.model)):
            loaded = load_checkpoint(checkpoint)
            size = loaded.input_size
            paths.append(export_onnx(loaded.model.eval(), Path(tmp) / f"{name}.onnx", size))
        for repeat in range(args.repeats):
            for runs in lengths:
                timed = time_files_in_turn(paths, input_size=size, batch=1, warmup=20,
                                           runs=runs)
                speedups[runs].append(timed.ratios[1])
                print(f"repeat {repeat + 1}, {runs} runs: {timed.ratios[1]:.2f}x"
                      f"{' (disturbed)' if timed.disturbed else ''}", flush=True)
    for runs, values in speedups.items():
        print(f"{runs} runs: median {statistics.median(values):.2f}x, max/min "
              f"{max(values) / min(values):.2f}, CV {statistics.stdev(values) / statistics.mean(values):.1%}")


if __name__ == "__main__":
    main()

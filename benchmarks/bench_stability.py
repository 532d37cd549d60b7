"""Is `compress bench` repeatable? Five separate `compress bench` processes on the shipped
baseline (exported to ONNX), batch 1; prints each median and the coefficient of variation
of the five medians. Target: CV <= 3 % on the 2-core CPU machine.

Then the same for a comparison: five `compress bench BASELINE --compare BASELINE_FP16`
processes, and the CV of the five speed-up ratios (interleaved timing).

    python benchmarks/bench_stability.py [--repeats 5] [--runs 300] [--provider cpu]
                                         [--threads N]

Reproduces: how repeatable `compress bench` is on this VM, and FP16 at the float32 speed
on the CPU (benchmarks/RESULTS.md, "Latency stability and timing method" and "FP16 on the
CPU", history of 2026-11-23, measured against the 0.8262 baseline).
Run time on the 2-core VM: not timed.
Output: each process's median and the coefficient of variation, then each comparison's
ratio and theirs, on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "checkpoints" / "mnv3_trashnet.safetensors"


def bench_once(onnx_path: Path, runs: int, provider: str, threads: int | None,
               compare: Path | None = None) -> dict:
    command = [sys.executable, "-m", "compress", "bench", str(onnx_path), "--batch", "1",
               "--runs", str(runs), "--provider", provider, "--json", "--no-peak"]
    command += ["--threads", str(threads)] if threads else []
    command += ["--compare", str(compare)] if compare else []
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--provider", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="passed to compress bench [default: its own, the usable cores]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, fp16_path = Path(tmp) / "baseline.onnx", Path(tmp) / "baseline_fp16.onnx"
        for path, flags in ((onnx_path, []), (fp16_path, ["--fp16"])):
            subprocess.run([sys.executable, "-m", "compress", "export", str(BASELINE),
                            "--out", str(path), *flags], check=True, capture_output=True)
        medians, ratios = [], []
        for repeat in range(1, args.repeats + 1):
            row = bench_once(onnx_path, args.runs, args.provider, args.threads)
            medians.append(row["p50_ms"])
            print(f"run {repeat}: median {row['p50_ms']:.3f} ms  p90 {row['p90_ms']:.3f}  "
                  f"p99 {row['p99_ms']:.3f}  std {row['std_ms']:.3f}  ({row['runs']} runs, "
                  f"{row['provider']})", flush=True)
        report("batch-1 medians", medians, "ms")
        for repeat in range(1, args.repeats + 1):
            row = bench_once(onnx_path, args.runs, args.provider, args.threads, fp16_path)
            ratios.append(row["speedup_vs_compare"])
            print(f"compare {repeat}: float32 {row['p50_ms']:.3f} ms, FP16 "
                  f"{row['compare_p50_ms']:.3f} ms, float32 is "
                  f"{row['speedup_vs_compare']:.3f}x the FP16 speed", flush=True)
        report("interleaved float32/FP16 ratios", ratios, "x")


def report(what: str, values: list[float], unit: str) -> None:
    mean = statistics.mean(values)
    cv = statistics.stdev(values) / mean
    print(f"{what}: mean {mean:.3f} {unit}, min {min(values):.3f}, max {max(values):.3f}; "
          f"coefficient of variation {cv:.2%} (target <= 3%): "
          + ("met" if cv <= 0.03 else "NOT met"), flush=True)


if __name__ == "__main__":
    main()

"""Is `compress bench` repeatable? Five separate `compress bench` processes on the shipped
baseline (exported to ONNX), batch 1; prints each median and the coefficient of variation
of the five medians. Target: CV <= 3 % on the 2-core CPU machine.

    python benchmarks/bench_stability.py [--repeats 5] [--runs 300] [--provider cpu]
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


def bench_once(onnx_path: Path, runs: int, provider: str) -> dict:
    command = [sys.executable, "-m", "compress", "bench", str(onnx_path), "--batch", "1",
               "--runs", str(runs), "--provider", provider, "--json", "--no-peak"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--provider", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "baseline.onnx"
        subprocess.run([sys.executable, "-m", "compress", "export", str(BASELINE), "--out",
                        str(onnx_path)], check=True, capture_output=True)
        medians = []
        for repeat in range(1, args.repeats + 1):
            row = bench_once(onnx_path, args.runs, args.provider)
            medians.append(row["p50_ms"])
            print(f"run {repeat}: median {row['p50_ms']:.3f} ms  p90 {row['p90_ms']:.3f}  "
                  f"p99 {row['p99_ms']:.3f}  std {row['std_ms']:.3f}  ({row['runs']} runs, "
                  f"{row['provider']})", flush=True)
    mean = statistics.mean(medians)
    cv = statistics.stdev(medians) / mean
    print(f"medians: mean {mean:.3f} ms, min {min(medians):.3f}, max {max(medians):.3f}; "
          f"coefficient of variation {cv:.2%} (target <= 3%): "
          + ("met" if cv <= 0.03 else "NOT met"))


if __name__ == "__main__":
    main()

"""Timings that notice a second process on the cores: the interleaved speed-up of one pair
over separate `compress bench --compare` processes, quiet and with a process spinning on
one core for part of each run, with re-timing (the default) and without it
(COMPRESS_RETIME_LIMIT=1, every run kept: how timings were taken before); and the same pair
timed twice the way a run times two stages against its input, the second time with the
spinning process, which must agree within 5 %.

    python benchmarks/timing_disturbance.py --out runs/timing_disturbance [--repeats 5]
                                            [--runs 1000]

The pair: the shipped baseline and the shipped small model (checkpoints/), exported to ONNX
under OUT. Each bench's JSON row is written to OUT/results/<case>_<n>.json and kept: a later
invocation runs only the cases missing (delete the folder to measure again). Run nothing
else meanwhile. Targets: coefficient of variation of the speed-up over the loaded runs at
most 3 %; the two timings of one model within 5 %; quiet runs no slower (wall time) than
without re-timing.

Reproduces: timings that notice a second process, and the speed-up's spread over separate
processes (docs/results.md, "Timing stability"; benchmarks/RESULTS.md, "Latency stability
and timing method", 2026-12-06).
Run time on the 2-core VM: twenty `compress bench` processes of 12-17 s each plus three
paired timings (2026-12-06); not timed as a whole.
Output: a table of the cases on stdout; every bench row under OUT/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "checkpoints" / "mnv3_trashnet.safetensors"
SMALL = REPO / "checkpoints" / "mnv3_small_trashnet.safetensors"
SPIN = [sys.executable, "-c", "while True: pass"]


def exported(checkpoint: Path, out: Path) -> Path:
    path = out / f"{checkpoint.stem}.onnx"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "compress", "export", str(checkpoint), "--out",
                        str(path)], check=True, capture_output=True)
    return path


class Spinner:
    """A process spinning on one core from `start` s for `length` s after it is armed."""

    def __init__(self, start: float, length: float) -> None:
        self.process = subprocess.Popen(
            ["bash", "-c", f"sleep {start}; exec timeout {length} " + " ".join(
                f"'{part}'" for part in SPIN)])

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def bench_row(model: Path, other: Path, runs: int, retime: bool, spin: tuple | None) -> dict:
    env = {**os.environ, **({} if retime else {"COMPRESS_RETIME_LIMIT": "1"})}
    command = [sys.executable, "-m", "compress", "bench", str(model), "--compare", str(other),
               "--batch", "1", "--runs", str(runs), "--json", "--no-peak"]
    spinner = Spinner(*spin) if spin else None
    started = time.perf_counter()
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    finally:
        if spinner:
            spinner.stop()
    row = json.loads(result.stdout.strip().splitlines()[-1])
    return row | {"wall_s": time.perf_counter() - started}


def cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.mean(values)


def bench_cases(out: Path, model: Path, other: Path, args: argparse.Namespace) -> dict:
    """Each case's rows, from OUT/results where a file exists, else measured now."""
    results = out / "results"
    results.mkdir(parents=True, exist_ok=True)
    # The spinning process starts 2 s in and runs for 40 % of a quiet run's wall time.
    cases = {"quiet": (True, False), "quiet_no_retime": (False, False),
             "loaded": (True, True), "loaded_no_retime": (False, True)}
    rows: dict[str, list[dict]] = {name: [] for name in cases}
    for repeat in range(args.repeats):
        for name, (retime, loaded) in cases.items():
            path = results / f"{name}_{repeat}.json"
            if not path.exists():
                quiet_wall = rows["quiet"][0]["wall_s"] if rows["quiet"] else 12.0
                spin = (2.0, round(0.4 * quiet_wall, 1)) if loaded else None
                row = bench_row(model, other, args.runs, retime, spin)
                path.write_text(json.dumps(row))
            row = json.loads(path.read_text())
            rows[name].append(row)
            print(f"{name:<17} {repeat + 1}: speed-up {row['speedup_vs_compare']:.3f}x "
                  f"(p10-p90 {row['speedup_p10']:.2f}-{row['speedup_p90']:.2f}), cycles timed "
                  f"again {row['retimed_cycles']}, disturbed {row['disturbed']}, "
                  f"{row['wall_s']:.1f} s", flush=True)
    return rows


def twice(out: Path, model: Path, other: Path, runs: int) -> list[list[float]]:
    """The pair timed twice in a timing process, as a run times two stages against its
    input (compress.time_files_in_turn); a process spins on one core through part of the
    second timing. Three such pairs."""
    import compress

    path = out / "results" / "twice.json"
    if path.exists():
        return json.loads(path.read_text())
    pairs = []
    for _ in range(3):
        first = compress.time_files_in_turn([other, model], input_size=128, warmup=20,
                                            runs=runs)
        spinner = Spinner(2.0, 4.0)
        try:
            second = compress.time_files_in_turn([other, model], input_size=128, warmup=20,
                                                 runs=runs)
        finally:
            spinner.stop()
        pairs.append([first.ratios[1], second.ratios[1], float(second.disturbed),
                      float(second.retimed)])
    path.write_text(json.dumps(pairs))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/timing_disturbance"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    model, other = exported(SMALL, out), exported(BASELINE, out)
    rows = bench_cases(out, model, other, args)
    print()
    for name, case_rows in rows.items():
        speedups = [row["speedup_vs_compare"] for row in case_rows]
        walls = [row["wall_s"] for row in case_rows]
        print(f"{name:<17} speed-up mean {statistics.mean(speedups):.3f}x, "
              f"{min(speedups):.3f}-{max(speedups):.3f}, coefficient of variation "
              f"{cv(speedups):.2%}; wall median {statistics.median(walls):.1f} s; "
              f"disturbed {sum(row['disturbed'] for row in case_rows)}/{len(case_rows)}")
    loaded_cv = cv([row["speedup_vs_compare"] for row in rows["loaded"]])
    print(f"target: CV of the loaded runs <= 3 %: {loaded_cv:.2%}, "
          + ("met" if loaded_cv <= 0.03 else "NOT met"))
    wall = statistics.median(r["wall_s"] for r in rows["quiet"]) / \
        statistics.median(r["wall_s"] for r in rows["quiet_no_retime"])
    print(f"quiet runs' wall time with re-timing over without: {wall:.3f}x")
    pairs = twice(out, model, other, args.runs)
    for first, second, disturbed, retimed in pairs:
        gap = abs(second / first - 1)
        print(f"timed twice: {first:.3f}x then {second:.3f}x with a spinning process "
              f"({int(retimed)} cycles timed again, disturbed {bool(disturbed)}): "
              f"{gap:.1%} apart (target <= 5 %: {'met' if gap <= 0.05 else 'NOT met'})")


if __name__ == "__main__":
    main()

"""The GPU path, every figure it is measured by, in one run, in this order of priority:
(1) batch-1 latency of the baseline and the default recipe's final model: torch eager FP32,
FP16 channels-last, CUDA graphs, and the launch floor, with ONNX Runtime on this machine's
CPU beside them (and its CUDA provider where onnxruntime-gpu loads); (2) images/s at batch
32 and 256; (3) `compress predict` images/s on TrashNet val, the model's share and what
bounds it; (4) AMP fine-tuning images/s (a training step contiguous against channels-last,
and a two-epoch `compress finetune` with its loader wait); (5) the cuda-marked tests.
Each section's figures are written to OUT/gpu_path.json and OUT/gpu_path.md as soon as it
ends, so a run stopped by its time limit keeps what it reached; `--budget-s` skips the
sections that would start after it.

On a GPU machine with torch but not compress's other dependencies, and no network: run
`bash benchmarks/gpu_prepare.sh` here once, then, with .whl and .gpudata copied there:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD && \
    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_path.py --data .gpudata/trashnet --out $OUT

Elsewhere (compress installed): python benchmarks/gpu_path.py --out runs/gpu_path
[--device cpu for a dry run of the script on a machine without a GPU].

Reproduces: the GPU path's figures (benchmarks/RESULTS.md, "GPU path": not yet taken on
a GPU; the dry run on the CPU only checks the script).
Run time: not timed (never run on a GPU; --budget-s bounds it).
Output: OUT/gpu_path.json and OUT/gpu_path.md, written after each section, and the same
on stdout.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from compress import (  # noqa: E402
    RunnerOptions,
    TorchRunner,
    compare_latency,
    convert_fp16,
    export_onnx,
    launch_floor,
    list_images,
    load_checkpoint,
    matmul_peak_gflops,
    measure_latency,
    onnxruntime_cuda_problem,
    open_model,
    predict_files,
    usable_cores,
)

BASELINE = REPO / "checkpoints" / "mnv3_trashnet.safetensors"
FINAL = REPO / ".gpudata" / "final.safetensors"  # put there by benchmarks/gpu_prepare.sh


class Report:
    """The figures so far, rewritten after every section."""

    def __init__(self, out: Path):
        self.out = out
        self.data: dict = {"sections": {}}
        self.lines: list[str] = ["# The GPU path (benchmarks/gpu_path.py)", ""]
        out.mkdir(parents=True, exist_ok=True)

    def section(self, name: str, figures: dict, lines: list[str]) -> None:
        self.data["sections"][name] = figures
        self.lines += [f"## {name}", "", *lines, ""]
        (self.out / "gpu_path.json").write_text(json.dumps(self.data, indent=1))
        (self.out / "gpu_path.md").write_text("\n".join(self.lines) + "\n")
        print("\n".join([f"## {name}", *lines]), flush=True)


def environment(device: str) -> tuple[dict, list[str]]:
    import onnxruntime as ort

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    figures = {"gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda,
               "onnxruntime": ort.__version__, "ort_providers": ort.get_available_providers(),
               "device": device}
    try:
        figures["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        figures["nvidia_smi"] = None
    return figures, [f"- {k}: {v}" for k, v in figures.items()]


def _forms(device: str) -> dict[str, dict]:
    """The torch forms timed: what a user gets step by step towards the deployed one."""
    forms = {"eager fp32": dict(precision="fp32", channels_last=False, graphs=False)}
    if device == "cuda":
        forms["eager fp16 channels-last"] = dict(precision="fp16", channels_last=True,
                                                 graphs=False)
        forms["CUDA graphs fp16 channels-last"] = dict(precision="fp16", channels_last=True,
                                                       graphs=True)
    else:  # a dry run: the CPU has no graphs and no fast FP16
        forms["eager bf16 channels-last"] = dict(precision="bf16", channels_last=True,
                                                 graphs=False)
    return forms


def _exported(checkpoint, folder: Path, name: str) -> Path:
    return export_onnx(copy.deepcopy(checkpoint.model), folder / f"{name}.onnx",
                       checkpoint.input_size, classes=checkpoint.classes)


def batch_one(models: dict, device: str, runs: int) -> tuple[dict, list[str]]:
    """Batch-1 median per model and form, the launch floor, ONNX Runtime beside them, and
    the final model's speed-up over the baseline timed interleaved in each runtime."""
    figures: dict = {}
    lines = ["| model | runtime / form | p50 ms | p90 ms |", "|---|---|---|---|"]
    notes = [""]  # below the table
    runners: dict = {}
    for name, checkpoint in models.items():
        for form, options in _forms(device).items():
            runner = TorchRunner.open(copy.deepcopy(checkpoint.model), device, **options)
            latency = measure_latency(runner, checkpoint.input_size, 1, 20, runs)
            figures[f"{name} | {runner.provider}"] = latency.__dict__
            runners[(name, form)] = runner
            lines.append(f"| {name} | {runner.provider} | {latency.median_ms:.3f} | "
                         f"{latency.p90_ms:.3f} |")
    size = models["baseline"].input_size
    classes = len(models["baseline"].classes)
    for form, options in _forms(device).items():
        floor = launch_floor(device, classes, options["precision"], options["graphs"])
        latency = measure_latency(floor, size, 1, 20, runs)
        figures[f"launch floor | {floor.provider}"] = latency.__dict__
        lines.append(f"| launch floor (one kernel) | {floor.provider} | "
                     f"{latency.median_ms:.3f} | {latency.p90_ms:.3f} |")
    deployed = list(_forms(device))[-1]
    comparison = compare_latency(runners[("baseline", deployed)], runners[("final", deployed)],
                                 size, 1, 20, runs)
    figures["final vs baseline, torch deployed"] = comparison.ratio
    notes.append(f"- final against baseline in torch ({deployed}), interleaved: "
                 f"{comparison.ratio:.2f}x")
    with tempfile.TemporaryDirectory() as folder:
        files = {name: _exported(c, Path(folder), name) for name, c in models.items()}
        providers = ["cpu"] + (["cuda"] if device == "cuda" and onnxruntime_cuda_problem()
                               is None else [])
        for provider in providers:
            if provider == "cuda":  # FP16 is what one deploys on a GPU
                files = {name: convert_fp16(path, path.with_name(f"{name}_fp16.onnx"))
                         for name, path in files.items()}
            ort = {name: open_model(path, RunnerOptions(provider=provider)).runner
                   for name, path in files.items()}
            comparison = compare_latency(ort["baseline"], ort["final"], size, 1, 20, runs)
            for name, latency in (("baseline", comparison.a), ("final", comparison.b)):
                figures[f"{name} | onnxruntime {latency.provider}"] = latency.__dict__
                lines.append(f"| {name} | onnxruntime {latency.provider} | "
                             f"{latency.median_ms:.3f} | {latency.p90_ms:.3f} |")
            figures[f"final vs baseline, onnxruntime {provider}"] = comparison.ratio
            notes.append(f"- final against baseline in ONNX Runtime {provider}, interleaved: "
                         f"{comparison.ratio:.2f}x")
        if device == "cuda" and len(providers) == 1:
            notes.append(f"- ONNX Runtime CUDA / TensorRT: not measured "
                         f"({onnxruntime_cuda_problem()})")
    precision = "fp16" if device == "cuda" else "fp32"
    peak = matmul_peak_gflops(device, precision)
    figures["peak_gflops"] = {precision: peak}
    notes.append(f"- matrix-product peak ({precision}): {peak:.0f} GFLOP/s")
    return figures, lines + notes


def throughput(models: dict, device: str, batches: list[int], runs: int
               ) -> tuple[dict, list[str]]:
    figures: dict = {}
    lines = ["| model | form | batch | p50 ms | images/s |", "|---|---|---|---|---|"]
    for name, checkpoint in models.items():
        for form, options in _forms(device).items():
            runner = TorchRunner.open(copy.deepcopy(checkpoint.model), device, **options)
            for batch in batches:
                latency = measure_latency(runner, checkpoint.input_size, batch, 5, runs)
                figures[f"{name} | {runner.provider} | {batch}"] = latency.__dict__
                lines.append(f"| {name} | {runner.provider} | {batch} | "
                             f"{latency.median_ms:.3f} | {latency.images_per_s:,.0f} |")
            del runner
    return figures, lines


def predict_speed(models: dict, device: str, data: Path) -> tuple[dict, list[str]]:
    files = list_images(data / "val")
    workers = min(8, usable_cores())
    figures: dict = {"images": len(files), "workers": workers}
    lines = [f"{len(files)} images of {data / 'val'}, {workers} decoding workers", "",
             "| model | runs in | batch | images/s | model share | waited s | bound by |",
             "|---|---|---|---|---|---|---|"]
    for name, checkpoint in models.items():
        for batch in (1, 32):
            runner = TorchRunner.open(copy.deepcopy(checkpoint.model), device)
            predict_files(runner, files[:64], checkpoint.input_size, batch, workers)  # warm
            result = predict_files(runner, files, checkpoint.input_size, batch, workers)
            figures[f"{name} | {batch}"] = {
                "images_per_s": result.images_per_s, "seconds": result.seconds,
                "model_seconds": result.model_seconds, "wait_seconds": result.wait_seconds,
                "bound_by": result.bound_by, "provider": runner.provider}
            lines.append(f"| {name} | {runner.provider} | {batch} | "
                         f"{result.images_per_s:,.0f} | "
                         f"{result.model_seconds / result.seconds:.0%} | "
                         f"{result.wait_seconds:.2f} | {result.bound_by} |")
    return figures, lines


def training_speed(device: str, data: Path, out: Path) -> tuple[dict, list[str]]:
    step = subprocess.run([sys.executable, str(REPO / "benchmarks/train_speed.py"),
                           str(BASELINE), "--device", device, "--batch", "64", "--steps", "20",
                           "--json"], capture_output=True, text=True, timeout=600)
    figures: dict = {"step": json.loads(step.stdout.splitlines()[-1]) if step.returncode == 0
                     else step.stderr[-2000:]}
    lines = []
    if step.returncode == 0:
        speeds = figures["step"]["images_per_s"]
        lines.append(f"one distillation step, batch 64 (AMP on CUDA): contiguous "
                     f"{speeds['contiguous']:,.0f} images/s, channels-last "
                     f"{speeds['channels_last']:,.0f} images/s "
                     f"({figures['step']['channels_last_speedup']:.2f}x)")
    run = out / "finetune"
    started = time.perf_counter()
    finetune = subprocess.run([sys.executable, "-m", "compress", "finetune", str(BASELINE),
                               "--data", str(data), "--epochs", "2", "--lr", "0.01",
                               "--distill", "--device", device, "--out", str(run)],
                              capture_output=True, text=True, timeout=900)
    figures["finetune_wall_s"] = time.perf_counter() - started
    if finetune.returncode != 0:
        figures["finetune_error"] = finetune.stderr[-2000:]
        return figures, lines + ["compress finetune failed: see gpu_path.json"]
    history = json.loads((run / "train/history.json").read_text())
    figures["finetune_history"] = history
    for row in history:
        lines.append(f"`compress finetune --epochs 2 --distill` epoch {row['epoch']}: "
                     f"{row['train_images_per_s']:,.0f} images/s, waited for images "
                     f"{row['loader_wait_share']:.0%} of training, first batch "
                     f"{row['first_batch_s']:.1f} s")
    lines += [line for line in finetune.stderr.splitlines() if line.startswith("loader:")]
    return figures, lines


def cuda_tests() -> tuple[dict, list[str]]:
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-rs",
                             "tests/measure/test_cuda_runtime.py",
                             "tests/training/test_cuda.py"], cwd=REPO, capture_output=True,
                            text=True, timeout=900)
    tail = result.stdout.strip().splitlines()[-30:]
    return {"returncode": result.returncode, "tail": tail}, ["```", *tail, "```"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/trashnet")
    parser.add_argument("--final", type=Path, default=FINAL,
                        help="the default recipe's final float model (the export stage's "
                        "checkpoint) [default: the one gpu_prepare.sh copied]")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--runs", type=int, default=300, help="timed runs per batch-1 figure")
    parser.add_argument("--budget-s", type=float, default=480,
                        help="start no section after this many seconds")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU here (give --device cpu for a dry run)", file=sys.stderr)
        return 2
    models = {"baseline": load_checkpoint(BASELINE), "final": load_checkpoint(args.final)}
    report = Report(args.out)
    started = time.perf_counter()
    sections = [
        ("environment", lambda: environment(args.device)),
        ("(5) plan made on the GPU against one made on the CPU", lambda: (
            {"not_built": True}, [
                "Not measured: the plan stage times ONNX files in ONNX Runtime, so without "
                "onnxruntime-gpu a plan made on a GPU machine is timed on its CPU. It needs "
                "the plan's latency table timed in the torch CUDA runner (not built)."])),
        ("(1) batch 1", lambda: batch_one(models, args.device, args.runs)),
        ("(2) batch 32 and 256", lambda: throughput(
            models, args.device, [32, 256] if args.device == "cuda" else [32], 50)),
        ("(3) compress predict", lambda: predict_speed(models, args.device, args.data)),
        ("(4) AMP fine-tuning", lambda: training_speed(args.device, args.data, args.out)),
        ("cuda-marked tests", cuda_tests),
    ]
    for name, run in sections:
        elapsed = time.perf_counter() - started
        if elapsed > args.budget_s:
            report.section(name, {"skipped": f"budget spent ({elapsed:.0f} s)"}, ["skipped"])
            continue
        try:
            figures, lines = run()
        except Exception:  # one section's failure must not cost the others' figures
            figures, lines = {"error": traceback.format_exc()}, [
                "failed:", "```", *traceback.format_exc().splitlines()[-12:], "```"]
        figures["section_seconds"] = time.perf_counter() - started - elapsed
        report.section(name, figures, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`compress bench`: latency of an ONNX file or a checkpoint over a batch sweep, optionally
interleaved with a second model, with MACs, achieved GFLOP/s and the device's peak."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from compress.errors import UserError, first_line
from compress.measure.disturbance import retime_limit
from compress.measure.latency import Comparison, Latency, compare_latency, measure_latency
from compress.measure.machine import format_machine, machine_info, peak_gflops, usable_cores
from compress.measure.runners import OrtRunner, ort_load_errors
from compress.measure.runtime import RunnerOptions, choose_bench_runtime, model_runtime
from compress.measure.threads import torch_threads
from compress.measure.torch_runner import TorchRunner, launch_floor_ms, matmul_peak_gflops

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")


@dataclass
class BenchModel:
    """A model opened for timing, with what is needed to read its figures."""

    path: str
    runner: Any
    input_size: int
    macs: int
    classes: list[str] | None = None
    exported_from: str | None = None  # the checkpoint `path` was exported from, to time it

    @property
    def shown(self) -> str:
        """The file the user named."""
        return f"{self.exported_from} (as ONNX)" if self.exported_from else self.path

    @property
    def note(self) -> str | None:
        return self.runner.note

    def check_batch(self, batch: int, option: str = "--batch") -> None:
        """An ONNX file exported for one batch size runs at that size only."""
        fixed = getattr(self.runner, "fixed_batch", lambda: None)()
        if fixed is not None and batch != fixed:
            raise UserError(f"{self.path} takes batches of {fixed} only; {option} {batch} "
                            "does not fit (compress export gives a dynamic batch)")


def _check_image_classifier(path: Path, session: Any) -> None:
    """One float image input [batch, 3, H, W] and one [batch, classes] output: what every
    command here feeds and reads."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise UserError(f"{path} has {len(inputs)} inputs; an image classifier here has one")
    shape, kind = inputs[0].shape, inputs[0].type
    if kind not in ("tensor(float)", "tensor(float16)") or len(shape) != 4 or \
            (isinstance(shape[1], int) and shape[1] != 3):
        raise UserError(f"{path}: its input is {kind} {shape}, not float images "
                        "[batch, 3, height, width]")
    if outputs[0].shape and len(outputs[0].shape) != 2:  # [] where ONNX leaves it unknown
        raise UserError(f"{path}: its output is {outputs[0].shape}, not [batch, classes]")


def open_model(path: str | Path, options: RunnerOptions = RunnerOptions(),
               input_size: int | None = None, compared: bool = False) -> BenchModel:
    """Open an ONNX file in ONNX Runtime (or OpenVINO), or a compress checkpoint in torch
    (or, with runtime onnxruntime or openvino, exported to a temporary ONNX file). `compared`: `input_size` is
    that of the model this one is timed against, not the user's."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    if path.suffix != ".onnx" and path.suffix not in CHECKPOINT_SUFFIXES:
        raise UserError(f"{path}: not a model file (expected .onnx or a checkpoint: "
                        + ", ".join(CHECKPOINT_SUFFIXES) + ")")
    choice = choose_bench_runtime(path.suffix, options.runtime, options.device,
                                  options.provider)
    options.check_for(choice)
    if choice.runtime == "torch":
        return _open_checkpoint(path, choice.device, options, input_size)
    onnx_path = path if path.suffix == ".onnx" else _exported(path, input_size)
    opened = _open_onnx(onnx_path, choice.provider or "cpu", options.threads, input_size,
                        compared)
    if choice.runtime == "openvino":  # checked and read in ONNX Runtime, run in OpenVINO
        from compress.measure.openvino_runner import OvRunner

        opened.runner = OvRunner.open(onnx_path, options.threads)
    if onnx_path != path:
        opened.exported_from = str(path)
    return opened


def _exported(checkpoint_path: Path, input_size: int | None) -> Path:
    """A checkpoint exported to ONNX in a temporary folder removed at exit."""
    import atexit
    import shutil
    import tempfile

    from compress.checkpoint import load_checkpoint
    from compress.ops.onnx_export import export_onnx

    checkpoint = load_checkpoint(checkpoint_path)
    folder = Path(tempfile.mkdtemp(prefix="compress-bench-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return export_onnx(checkpoint.model, folder / (checkpoint_path.stem + ".onnx"),
                       input_size or checkpoint.input_size, classes=checkpoint.classes)


def _open_onnx(path: Path, provider: str, threads: int | None,
               input_size: int | None, compared: bool = False) -> BenchModel:
    from compress.measure.onnx_macs import onnx_macs
    from compress.ops.onnx_export import read_metadata

    try:
        runner = OrtRunner.open(path, provider, threads)
    except ort_load_errors() as exc:
        raise UserError(f"{path} is not a valid ONNX model: {first_line(exc)}") from None
    _check_image_classifier(path, runner.session)
    fixed = runner.input_size()
    try:
        classes, stored = read_metadata(runner.session)
    except ValueError:
        raise UserError(f"{path}: its stored class names or input size are not readable "
                        "(JSON list, integer)") from None
    if fixed is not None and input_size is not None and input_size != fixed:
        raise UserError(f"{path} takes {fixed}x{fixed} images, not the {input_size}x"
                        f"{input_size} of the model it is compared with" if compared else
                        f"{path} takes {fixed}x{fixed} images; --input-size {input_size} "
                        "does not fit")
    size = input_size or fixed or stored
    if size is None:
        raise UserError(f"{path} has no fixed input size and stores none: export it with "
                        "compress export, or give its size (bench, inspect: --input-size)")
    return BenchModel(str(path), runner, size, onnx_macs(path, size), classes)


def _open_checkpoint(path: Path, device: str, options: RunnerOptions,
                     input_size: int | None) -> BenchModel:
    from compress.checkpoint import load_checkpoint
    from compress.measure.macs import count_macs

    checkpoint = load_checkpoint(path)
    size = input_size or checkpoint.input_size
    macs = count_macs(checkpoint.model, size)
    runner = TorchRunner.open(checkpoint.model, device, options.compile_model,
                              options.precision, graphs=options.graphs)
    return BenchModel(str(path), runner, size, macs, checkpoint.classes)


@dataclass
class BenchRow:
    batch: int
    latency: Latency
    macs: int
    comparison: Comparison | None = None  # a = the --compare model, b = this model

    @property
    def gflops(self) -> float:
        """Achieved GFLOP/s: 2 x MACs per image x batch / median latency."""
        return 2 * self.macs * self.batch / (self.latency.median_ms / 1000) / 1e9

    def as_dict(self) -> dict[str, Any]:
        lat = self.latency
        row = {"provider": lat.provider, "batch": self.batch, "p10_ms": lat.p10_ms,
               "p50_ms": lat.median_ms, "p90_ms": lat.p90_ms, "p99_ms": lat.p99_ms,
               "mean_ms": lat.mean_ms, "std_ms": lat.std_ms, "runs": lat.runs,
               "images_per_s": lat.images_per_s, "macs": self.macs, "gflops": self.gflops,
               "disturbed": lat.disturbed, "retimed": lat.retimed}
        if self.comparison is not None:
            compared = self.comparison
            row |= {"compare_p50_ms": compared.a.median_ms, "speedup_vs_compare": compared.ratio,
                    "speedup_p10": compared.ratio_p10, "speedup_p90": compared.ratio_p90,
                    "disturbed": compared.disturbed, "retimed_cycles": compared.retimed}
        return row


@dataclass(frozen=True)
class BenchOptions:
    """What `compress bench` times and prints, besides the model files."""

    runner: RunnerOptions = RunnerOptions(provider="cpu")  # threads: default usable cores
    batches: Sequence[int] = (1, 8)
    warmup: int = 20  # untimed runs first; 0: none at all
    runs: int = 300  # timed runs per batch size (per model with a second one)
    seconds: float | None = None  # time this long per batch size instead of `runs`
    input_size: int | None = None  # default: the model's
    peak: bool = True  # measure the device's matrix-product peak to read GFLOP/s against
    profile: bool = False  # ONNX: the share of the batch-1 time per op type
    as_json: bool = False  # one JSON object per batch size on `echo`, the header on `note`


def bench(model: BenchModel, options: BenchOptions, other: BenchModel | None = None,
          progress=lambda batch: None) -> list[BenchRow]:
    """One row per batch size; with `other`, both are timed interleaved at each size."""
    rows = []
    for batch in options.batches:
        progress(batch)
        if other is None:
            latency = measure_latency(model.runner, model.input_size, batch, options.warmup,
                                      options.runs, options.seconds)
            rows.append(BenchRow(batch, latency, model.macs))
        else:
            comparison = compare_latency(other.runner, model.runner, model.input_size, batch,
                                         options.warmup, options.runs, seconds=options.seconds)
            rows.append(BenchRow(batch, comparison.b, model.macs, comparison))
    return rows


COLUMNS = ("batch", "p10 ms", "p50 ms", "p90 ms", "p99 ms", "mean ms", "std ms", "img/s",
           "GFLOP/s", "runs")


def format_rows(rows: list[BenchRow]) -> list[str]:
    """The table; a row timed while other processes kept using the cores ends in
    `disturbed`, and a line under the table says what that means."""
    compare = rows and rows[0].comparison is not None
    header = COLUMNS + ("other p50", "speed-up", "p10-p90") if compare else COLUMNS
    def line(cells: list[str]) -> str:  # the spread, as 12.34-56.78, takes more room
        return "".join(f"{c:>10}" for c in cells[:len(COLUMNS) + 2]) + \
            "".join(f"{c:>13}" for c in cells[len(COLUMNS) + 2:])

    lines = [line(list(header))]
    for row in rows:
        lat = row.latency
        cells = [str(row.batch), f"{lat.p10_ms:.3f}", f"{lat.median_ms:.3f}",
                 f"{lat.p90_ms:.3f}", f"{lat.p99_ms:.3f}", f"{lat.mean_ms:.3f}",
                 f"{lat.std_ms:.3f}", f"{lat.images_per_s:.1f}", f"{row.gflops:.2f}",
                 str(lat.runs)]
        if compare:
            compared = row.comparison
            cells += [f"{compared.a.median_ms:.3f}", f"{compared.ratio:.2f}x",
                      f"{compared.ratio_p10:.2f}-{compared.ratio_p90:.2f}"]
        lines.append(line(cells) + ("  disturbed" if lat.disturbed else ""))
    retimed = sum(row.latency.retimed for row in rows)
    if any(row.latency.disturbed for row in rows):
        lines.append("disturbed: other processes used the cores during the timing, and "
                     f"re-timing up to {retime_limit():g}x the runs did not get clear of them; "
                     "the figures of those rows include their runs")
    elif retimed:
        lines.append(f"{retimed} runs timed while other processes used the cores were left out "
                     "and timed again")
    return lines


def _model_line(target: BenchModel, other: BenchModel | None) -> str:
    return (f"model: {target.shown}, {target.input_size}x{target.input_size}, "
            f"{target.macs / 1e6:.2f} M MACs per image, runs in {target.runner.provider}"
            + (f"; interleaved with {other.shown}" if other else ""))


@dataclass
class Ceilings:
    """What the device can do, for reading the model's figures against: the peak of a large
    matrix product, and (torch) the launch floor, a one-kernel model's batch-1 latency with
    the same copies, graph and synchronise."""

    peak_gflops: float | None = None
    peak_kind: str = "fp32"
    launch_floor_ms: float | None = None


def _ceilings(target: BenchModel, options: BenchOptions) -> Ceilings:
    runner = target.runner
    if not isinstance(runner, TorchRunner):  # an ONNX file on a CPU or ONNX Runtime provider
        return Ceilings(peak_gflops(runner.provider_key, options.runner.threads)
                        if options.peak else None)
    classes = len(target.classes) if target.classes else 1
    floor_ms = launch_floor_ms(runner.device, classes, target.input_size,
                               runner.precision, runner.graphs, options.warmup, options.runs)
    peak_value = matmul_peak_gflops(runner.device, runner.precision) if options.peak else None
    return Ceilings(peak_value, runner.precision, floor_ms)


def _summary_lines(rows: list[BenchRow], target: BenchModel, other: BenchModel | None,
                   ceilings: Ceilings) -> list[str]:
    lines = format_rows(rows)
    if other:
        lines.append(f"speed-up = median over cycles of median({other.shown}) / "
                     f"median({target.shown}) in each cycle of interleaved blocks, per batch "
                     "size; p10-p90: the spread of those per-cycle ratios")
    if ceilings.peak_gflops:
        best = max(row.gflops for row in rows)
        lines.append(f"peak {ceilings.peak_kind} matrix product on this device: "
                     f"{ceilings.peak_gflops:.1f} GFLOP/s; the model reaches {best:.2f} "
                     f"GFLOP/s ({best / ceilings.peak_gflops:.1%} of it)")
    if ceilings.launch_floor_ms is not None:
        one = next((row for row in rows if row.batch == 1), None)
        share = f"; batch 1 is {one.latency.median_ms / ceilings.launch_floor_ms:.1f}x it" \
            if one else ""
        lines.append(f"launch floor (a one-kernel model, same copies and synchronise) at "
                     f"batch 1: {ceilings.launch_floor_ms:.3f} ms{share}")
    return lines


def bench_files(model_path: str | Path, other_path: str | Path | None = None,
                options: BenchOptions = BenchOptions(),
                echo: Callable[[str], None] = print,
                note: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
                ) -> list[BenchRow]:
    """`compress bench`: the machine and model header, then the table (or, with
    `options.as_json`, one JSON object per batch size on `echo` and the header on `note`, so
    that stdout stays machine-readable). Threads default to the cores this process may use."""
    runner = replace(options.runner, threads=options.runner.threads or usable_cores())
    options = replace(options, runner=runner)
    if other_path is not None and runner.runtime == "auto" and \
            model_runtime(Path(model_path).suffix) != model_runtime(Path(other_path).suffix):
        raise UserError(f"--compare: {model_path} and {other_path} run in different runtimes "
                        "(ONNX Runtime, torch); a speed-up is measured within one: give "
                        "--runtime onnxruntime (checkpoints are exported) or two of a kind")
    info = machine_info(runner.threads)
    with torch_threads(runner.threads):  # the torch runner's, for this bench only
        target = open_model(model_path, runner, options.input_size)
        other = open_model(other_path, runner, target.input_size, compared=True) \
            if other_path else None
        if options.profile and not isinstance(target.runner, OrtRunner):
            raise UserError("--profile: ONNX files are profiled in ONNX Runtime only (give "
                            "--runtime onnxruntime; a checkpoint is exported first)")
        for batch in options.batches:  # before any line is printed: an error is the only line
            for opened in (target, other) if other else (target,):
                opened.check_batch(batch)
        header = note if options.as_json else echo
        header(format_machine(info))
        for model_note in {target.note, other and other.note} - {None}:
            header(f"note: {model_note}")
        header(_model_line(target, other))
        rows = bench(target, options, other, progress=lambda b: None if options.as_json
                     else note(f"timing batch {b} ..."))
        for line in _result_lines(rows, target, other, options):
            echo(line)
        return rows


def _result_lines(rows: list[BenchRow], target: BenchModel, other: BenchModel | None,
                  options: BenchOptions) -> list[str]:
    """The table and what to read it against, or one JSON object per batch size; then the
    profile where asked for."""
    ceilings = _ceilings(target, options)
    lines = [json.dumps(row.as_dict() | {"model": target.shown} | asdict(ceilings))
             for row in rows] if options.as_json else \
        _summary_lines(rows, target, other, ceilings)
    if options.profile:
        lines += _profile_lines(target, target.runner.provider_key, options.runner.threads,
                                options.as_json)
    return lines


def _profile_lines(target: BenchModel, provider: str, threads: int, as_json: bool
                   ) -> list[str]:
    from compress.measure.op_profile import format_profile, op_type_profile

    rows = op_type_profile(target.path, target.input_size, 1, provider, threads)
    if as_json:
        return [json.dumps({"model": target.path, "op_types": [asdict(r) for r in rows]})]
    return ["", "batch 1, share of the time per op type (ONNX Runtime's profiler):",
            *format_profile(rows, top=12)]

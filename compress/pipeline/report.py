"""Run report: report.json, a Markdown table, and a plot of macro F1 against speed-up."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compress.fileio import write_atomic, write_json_atomic
from compress.measure.op_profile import OpTypeShare, format_profile
from compress.pipeline.runstore import StageRecord
from compress.plotting import figure_file, label_points
from compress.stages.base import StageStatus

_WIDTHS = (24, 11, 9, 18, 10, 10, 8, 10, 8, 6)
# macro F1 and acc: on the evaluated split (val); held-out: macro F1 on the train images held
# out of the input model's training, which the run's choices were judged on.
COLUMNS = ("stage", "params", "MACs", "lat b1 ms", "speed-up", "macro F1", "acc", "held-out",
           "score", "s")


def _fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def row_cells(record: StageRecord, input_ms: float | None = None) -> list[str]:
    """The record's table cells; `input_ms`, the run input's batch-1 median, turns the
    stage's speed-up into its latency column (see table_legend)."""
    flag = " (slower)" if record.slower else ""
    flag += " (disturbed)" if record.timing_disturbed else ""
    skipped = " [skipped]" if record.status is StageStatus.SKIPPED else ""
    name = f"{record.index}:{record.name}{skipped}"
    speedup = _fmt(record.speedup_vs_input, ".2f")
    return [name, f"{record.params:,}", f"{record.macs / 1e6:.1f}M",
            _fmt(shown_latency_ms(record, input_ms), ".2f") + flag,
            speedup + ("x" if speedup != "n/a" else ""),
            _fmt(record.macro_f1, ".4f"), _fmt(record.accuracy, ".4f"),
            _fmt(record.held_out_macro_f1, ".4f"), _fmt(record.score, ".4f"),
            f"{record.seconds:.0f}"]


def shown_latency_ms(record: StageRecord, input_ms: float | None) -> float | None:
    """The latency the table shows: the input's batch-1 median divided by the stage's
    speed-up, so that the two columns come from one timing and never disagree (a stage's
    own median is taken in its interleaved timing with the input, at that moment's pace,
    and stays in its record); the input's own median for the input."""
    if record.index == 0 or input_ms is None or not record.speedup_vs_input:
        return record.latency_ms
    return input_ms / record.speedup_vs_input


def input_latency_ms(records: list[StageRecord]) -> float | None:
    """The run input's batch-1 median, where `records` start with the input."""
    return records[0].latency_ms if records and records[0].index == 0 else None


def table_rows(records: list[StageRecord]) -> list[list[str]]:
    input_ms = input_latency_ms(records)
    return [row_cells(record, input_ms) for record in records]


def table_legend(provider: str) -> str:
    """Which timing and which split each column of the stage table comes from."""
    return (f"speed-up: the input's batch-1 time over the stage's, the two timed interleaved "
            f"in {provider} (median over cycles); lat b1 ms: the input's batch-1 median "
            f"divided by that speed-up; macro F1, acc: the evaluated split (val); held-out: "
            f"the train images held out of the input's training; score: lower is better")


def format_row(record: StageRecord, input_ms: float | None = None) -> str:
    return "".join(f"{c:<{w}}" for c, w in zip(row_cells(record, input_ms), _WIDTHS))


def header_line() -> str:
    return "".join(f"{c:<{w}}" for c, w in zip(COLUMNS, _WIDTHS))


@dataclass(frozen=True)
class RunReport:
    """What a run reports: its stage records and what only the end of the run measures.
    `floor`: FinalModelFigures.distance_to_floor of the last stage, `runtimes`:
    FinalModelFigures.runtimes_compared of it, `device`: Measurer.device_fingerprint.
    `finished` is False for a run read back before its end (no report.json)."""

    records: list[StageRecord]
    recipe: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    floor: dict[str, Any] | None = None
    runtimes: dict[str, Any] | None = None
    device: dict[str, Any] | None = None
    finished: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "notes": self.notes,
                "stages": [asdict(r) for r in self.records],
                "distance_to_floor": self.floor, "runtimes": self.runtimes,
                "device": self.device}

    @classmethod
    def from_json(cls, data: dict[str, Any], records: list[StageRecord]) -> RunReport:
        """report.json's figures beside `records` (the run's stage records)."""
        return cls(records, data.get("recipe", {}), data.get("notes", []),
                   data.get("distance_to_floor"), data.get("runtimes"), data.get("device"))


def write_report(root: Path, report: RunReport) -> dict[str, Path]:
    """report.json, report.md and (where every stage has a macro F1) report.png."""
    root = Path(root)
    records, notes, runtimes, floor = report.records, report.notes, report.runtimes, report.floor
    write_json_atomic(root / "report.json", report.to_json())
    lines = ["# compress run report", ""]
    lines += [f"- {note}" for note in notes] + ([""] if notes else [])
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(records)]
    lines += ["", table_legend(records[0].provider) + " (see the recipe's 'score')."]
    agreements = [r for r in records if r.deployed_top1_agreement is not None]
    if agreements:
        lines += ["", "Top-1 agreement of the timed torch form with the float32 ONNX file on "
                  "the evaluated images: " + ", ".join(
                      f"{r.index}:{r.name} {r.deployed_top1_agreement:.1%}"
                      for r in agreements) + "."]
    if runtimes:
        lines += ["", *runtime_lines(runtimes)]
    if floor:
        lines += ["", *_floor_lines(floor)]
    write_atomic(root / "report.md", "\n".join(lines) + "\n")
    paths = {"json": root / "report.json", "markdown": root / "report.md"}
    if all(r.macro_f1 is not None for r in records):
        paths["plot"] = _plot(root / "report.png", records)
    return paths


RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime (CPU)", "openvino": "OpenVINO (CPU)"}


def runtime_lines(runtimes: dict[str, Any]) -> list[str]:
    """The final model in each installed runtime, as Markdown."""
    lines = [f"## The final model in each runtime (stage {runtimes['stage']}, batch 1, timed "
             "in turn)", "", "| runtime | median ms | speed-up over ONNX Runtime | top-1 "
             "agreement with ONNX Runtime |", "|---|---|---|---|"]
    for name, figures in runtimes["runtimes"].items():
        agreement = figures["top1_agreement_with_onnxruntime"]
        lines.append(f"| {RUNTIME_NAMES.get(name, name)} | {figures['median_ms']:.3f} | "
                     f"{figures['speedup_vs_onnxruntime']:.2f}x | "
                     f"{'n/a' if agreement is None else format(agreement, '.1%')} |")
    lines += ["", f"Fastest: {RUNTIME_NAMES.get(runtimes['fastest'], runtimes['fastest'])}."]
    return lines + [f"{note}." for note in runtimes["notes"]]


def _floor_lines(floor: dict[str, Any]) -> list[str]:
    rows = [OpTypeShare(**row) for row in floor["op_types"]]
    if "launch_floor_ms" in floor:
        return [f"## Distance to the floor (stage {floor['stage']}, batch 1)", "",
                f"{floor['gflops']:.2f} GFLOP/s achieved in {floor['runtime']} against this "
                f"device's {floor['peak_kind']} matrix-product peak of "
                f"{floor['peak_gflops']:.1f} GFLOP/s ({floor['share_of_peak']:.1%} of it); "
                f"launch floor (a one-kernel model timed the same way): "
                f"{floor['launch_floor_ms']:.3f} ms."]
    if not floor["op_types"]:  # OpenVINO: no per-op profile
        return [f"## Distance to the floor (stage {floor['stage']}, batch 1)", "",
                f"{floor['gflops']:.2f} GFLOP/s achieved in {floor['runtime']} against this "
                f"device's float32 MatMul peak of {floor['peak_gflops']:.1f} GFLOP/s "
                f"({floor['share_of_peak']:.1%} of it)."]
    return [f"## Distance to the floor (stage {floor['stage']}, batch 1)", "",
            f"{floor['gflops']:.2f} GFLOP/s achieved against this device's float32 MatMul "
            f"peak of {floor['peak_gflops']:.1f} GFLOP/s ({floor['share_of_peak']:.1%} of "
            "it). Where the time goes (ONNX Runtime's profiler, op types after graph "
            "optimisation):", "", "```", *format_profile(rows), "```"]


def _plot(path: Path, records: list[StageRecord]) -> Path:
    with figure_file(path) as ax:
        points, labels = f1_against_speedup(records)
        ax.plot(*zip(*points), "-o")
        axes_f1_against_speedup(ax, records[0].provider)
        ax.set_title("macro F1 against speed-up, per stage")
        label_points(ax, points, labels)
    return path


def f1_against_speedup(records: list[StageRecord]
                       ) -> tuple[list[tuple[float, float]], list[str]]:
    """The stages' (speed-up over the input, macro F1), from the table's timing, and their
    labels."""
    shown = [r for r in records if r.macro_f1 is not None and r.speedup_vs_input]
    return ([(r.speedup_vs_input, r.macro_f1) for r in shown],
            [f"{r.index}:{r.name}" for r in shown])


def axes_f1_against_speedup(ax, provider: str) -> None:
    runtime = provider.removesuffix("ExecutionProvider")
    ax.set_xlabel(f"speed-up over the input (batch 1, {runtime}, timed interleaved)")
    ax.set_ylabel("macro F1 (val)")
    ax.grid(alpha=0.3)

"""report.html: a run (or several, side by side) as one self-contained page: the stage table,
macro F1 against speed-up, the per-layer plan or pruned widths where the run has them, the
parity checks, the final model in each runtime, the distance to the floor and the device.
Plots are PNGs embedded as data: URIs, so the file opens anywhere with no network.

A run's figures come from its stage records (stages/*/record.json), so an interrupted run
has a page too; what only the end of a run writes (device, runtimes, floor) comes from its
report.json where there is one.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress.errors import UserError
from compress.fileio import write_atomic
from compress.pipeline.report import (
    COLUMNS,
    RunReport,
    axes_f1_against_speedup,
    f1_against_speedup,
    runtime_lines,
    table_legend,
    table_rows,
)
from compress.pipeline.runstore import StageRecord, read_run
from compress.plotting import label_points, new_figure, png_bytes
from compress.stages.base import ReportBars, ReportTable, Stage, cell
from compress.stages.registry import stage_class

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:72em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em
.6em;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
code{background:#f3f3f3;padding:0 .2em}img{max-width:100%}.note{color:#555}"""


@dataclass(frozen=True)
class RunPage:
    root: Path  # the run folder, named on the page
    report: RunReport

    @property
    def name(self) -> str:
        return self.root.name


def read_run_page(run_dir: str | Path) -> RunPage:
    """A run folder's records and, where the run finished, its report.json."""
    root = Path(run_dir)
    if not root.is_dir():
        raise UserError(f"{root}: no such run folder")
    records = read_run(root)
    if not records:
        raise UserError(f"{root}: no finished stage (stages/*/record.json); is it a run folder "
                        "of compress run?")
    report_path = root / "report.json"
    if not report_path.is_file():
        return RunPage(root, RunReport(records, finished=False))
    return RunPage(root, RunReport.from_json(json.loads(report_path.read_text()), records))


def write_html_report(runs: list[RunPage], out: str | Path) -> Path:
    """One run's page, or with several runs their comparison (a table per run, one plot
    with a series per run), written atomically to `out`."""
    title = f"compress run {runs[0].name}" if len(runs) == 1 else \
        "compress runs compared: " + ", ".join(run.name for run in runs)
    body = [f"<h1>{_e(title)}</h1>",
            "<h2>Macro F1 against speed-up</h2>", _image(_f1_speedup_png(runs),
                                                          "macro F1 against speed-up")]
    for run in runs:
        body += _run_sections(run, heading=len(runs) > 1)
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    write_atomic(Path(out), page)
    return Path(out)


def _run_sections(run: RunPage, heading: bool) -> list[str]:
    report = run.report
    records = report.records
    parts = [f"<h2>{_e(run.name)}</h2>"] if heading else []
    parts.append(f"<p class=\"note\">Run folder <code>{_e(run.root)}</code>; input "
                 f"<code>{_e(report.recipe.get('checkpoint', '?'))}</code>"
                 + ("" if report.finished else "; not finished (no report.json)") + ".</p>")
    parts += [f"<p class=\"note\">{_e(note)}</p>" for note in report.notes]
    parts += ["<h3>Stages</h3>", _table(COLUMNS, table_rows(records)),
              f"<p class=\"note\">{_e(table_legend(records[0].provider))}.</p>"]
    notes = [(f"{r.index}:{r.name}", r.note) for r in records if r.note]
    if notes:
        parts += ["<h3>Stage notes</h3>", _table(("stage", "note"), notes)]
    parts += _stage_sections(records)
    parts += _parity_section(records)
    if report.runtimes:
        parts += ["<h3>The final model in each runtime</h3>",
                  _markdown_table(runtime_lines(report.runtimes))]
    floor = report.floor
    if floor:
        parts += ["<h3>Distance to the floor</h3>", f"<p>{floor['gflops']:.2f} GFLOP/s "
                  f"achieved in {_e(floor.get('runtime', records[-1].provider))} at batch 1, "
                  f"{floor['share_of_peak']:.1%} of this device's "
                  f"{_e(floor.get('peak_kind', 'float32'))} "
                  f"matrix-product peak ({floor['peak_gflops']:.1f} GFLOP/s).</p>"]
    if report.device:
        device = {key: ", ".join(value) if key == "cpu_flags" else
                  json.dumps(value) if isinstance(value, dict) else value
                  for key, value in report.device.items()}
        parts += ["<h3>Device</h3>", _table(("what", "value"), list(device.items()))]
    return parts


def _stage_sections(records: list[StageRecord]) -> list[str]:
    """What each stage shows of its result (compress.stages.base.Stage.report_sections)."""
    parts = []
    for record in records:
        stage = _stage_kind(record.name)
        if stage is None:
            continue
        for section in stage.report_sections(record.result, f"{record.index}:{record.name}"):
            parts.append(f"<h3>{_e(section.title)}</h3>")
            if isinstance(section, ReportTable):
                parts.append(_table(section.header, section.rows))
            elif isinstance(section, ReportBars):
                parts.append(_image(_bars_png(section), section.title))
            else:
                parts.append(f"<pre>{_e(section.text[:20000])}</pre>")
    return parts


def _parity_section(records: list[StageRecord]) -> list[str]:
    rows = []
    for record in records:
        stage = f"{record.index}:{record.name}"
        kind = _stage_kind(record.name)
        rows += [(stage, row.check, cell(row.relative_error, ".2e"),
                  cell(row.top1_agreement, ".1%"))
                 for row in (kind.parity_rows(record.result) if kind else [])]
        if record.deployed_top1_agreement is not None:
            rows.append((stage, "timed form against float32 ONNX", "",
                         cell(record.deployed_top1_agreement, ".1%")))
    if not rows:
        return []
    return ["<h3>Parity checks</h3>",
            _table(("stage", "check", "relative error", "top-1 agreement"), rows)]


def _stage_kind(name: str) -> type[Stage] | None:
    """The registered stage a record was written by; None for the input (stage 0) and for
    a kind no longer registered (an old run)."""
    try:
        return stage_class(name)
    except KeyError:
        return None


def _f1_speedup_png(runs: list[RunPage]) -> bytes:
    """Each run's stages, macro F1 against speed-up over its input, labelled without
    overlaps (with several runs, a label starts with its run's name; runs from different
    inputs name theirs in the legend, since their speed-ups share no reference)."""
    figure = new_figure((7, 4.5))
    ax = figure.subplots()
    inputs = {run.name: Path(str(run.report.recipe.get("checkpoint", "?"))).name
              for run in runs}
    one_input = len(set(inputs.values())) == 1
    every_point, every_label = [], []
    for run in runs:
        points, labels = f1_against_speedup(run.report.records)
        if not points:
            continue
        ax.plot(*zip(*points), "-o",
                label=run.name if one_input else f"{run.name} (over {inputs[run.name]})")
        every_point += points
        every_label += labels if len(runs) == 1 else [f"{run.name} {x}" for x in labels]
    axes_f1_against_speedup(ax, runs[0].report.records[0].provider)
    if not one_input:
        ax.set_xlabel("speed-up over each run's own input (batch 1, timed interleaved)")
    if len(runs) > 1:
        ax.legend(fontsize=8)
    label_points(ax, every_point, every_label, fontsize=7)
    return png_bytes(figure)


def _bars_png(section: ReportBars) -> bytes:
    names = list(section.before_after)
    figure = new_figure((max(6, len(names) * 0.22), 3.5))
    ax = figure.subplots()
    positions = range(len(names))
    ax.bar(positions, [w[0] for w in section.before_after.values()], color="#ccc",
           label="before")
    ax.bar(positions, [w[1] for w in section.before_after.values()], color="tab:blue",
           label="after")
    ax.set_xticks(list(positions), names, rotation=90, fontsize=6)
    ax.set_ylabel(section.y_label)
    ax.set_title(section.title)
    ax.legend(fontsize=8)
    return png_bytes(figure)


def _image(png: bytes, alt: str) -> str:
    return f"<img alt=\"{_e(alt)}\" src=\"data:image/png;base64," \
           f"{base64.b64encode(png).decode('ascii')}\">"


def _table(header: tuple | list, rows: list) -> str:
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _markdown_table(lines: list[str]) -> str:
    """runtime_lines' Markdown (a heading, a table, sentences) as HTML."""
    rows = [line.strip("|").split(" | ") for line in lines if line.startswith("| ")]
    sentences = [line for line in lines if line and line[0] not in "#|"]
    return _table([cell.strip() for cell in rows[0]], [[c.strip() for c in row]
                                                        for row in rows[1:]]) + \
        "".join(f"<p>{_e(sentence)}</p>" for sentence in sentences)


def _e(value: Any) -> str:
    return html.escape(str(value))

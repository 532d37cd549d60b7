"""The run's stage table and plot: latency and speed-up from one timing, labels that do not
overlap."""

from __future__ import annotations

from matplotlib.text import Text

from compress.pipeline.report import RunReport, format_row, table_rows, write_report
from compress.pipeline.runstore import StageRecord


def _record(index: int, name: str, latency_ms: float, speedup: float | None,
            macro_f1: float) -> StageRecord:
    return StageRecord(index=index, name=name, status="done", note="", params=10, macs=20e6,
                       latency_ms=latency_ms, latency_p90_ms=latency_ms,
                       speedup_vs_input=speedup, latency_by_batch={},
                       provider="CPUExecutionProvider", macro_f1=macro_f1, accuracy=0.9,
                       score=1.0, seconds=2.0, checkpoint="c", onnx="o")


# A run like the default recipe's: the first prune timed at a slow moment (its own median
# above the input's) but faster than the input in the interleaved timing; the last three
# stages the same graph (same speed-up and F1) beside a near neighbour.
RUN = [_record(0, "input", 1.74, 1.0, 0.8465), _record(1, "prune", 2.37, 1.24, 0.8300),
       _record(2, "finetune", 1.40, 1.24, 0.8410), _record(3, "decompose", 0.50, 3.60, 0.8200),
       _record(4, "finetune", 0.49, 3.62, 0.8205), _record(5, "export", 0.48, 3.62, 0.8205),
       _record(6, "quantize", 0.48, 3.62, 0.8205)]


def test_no_row_reads_slower_in_milliseconds_and_faster_in_speed_up():
    rows = table_rows(RUN)
    latency = [float(row[3]) for row in rows]
    speedup = [float(row[4].rstrip("x")) for row in rows]
    assert latency[0] == 1.74 and latency[1] == round(1.74 / 1.24, 2)
    for row_latency, row_speedup in zip(latency[1:], speedup[1:]):
        assert (row_latency < latency[0]) == (row_speedup > 1.0)
        assert abs(row_latency * row_speedup / latency[0] - 1) < 0.02  # 2-digit cells
    assert "1.40" in format_row(RUN[1], 1.74) and "2.37" not in format_row(RUN[1], 1.74)
    # Without a speed-up (not timed against the input) a row shows its own median; without
    # the input among the records, every row does.
    untimed = _record(7, "export", 0.50, None, 0.8205)
    assert table_rows([*RUN, untimed])[-1][3:5] == ["0.50", "n/a"]
    assert [row[3] for row in table_rows(RUN[1:])] == \
        [f"{r.latency_ms:.2f}" for r in RUN[1:]]


def test_the_plot_draws_f1_against_speed_up_with_labels_that_do_not_overlap(tmp_path,
                                                                            monkeypatch):
    import compress.pipeline.report as report

    drawn = {}
    real_label_points = report.label_points

    def keep(ax, points, labels, fontsize=8):
        drawn["axes"], drawn["points"] = ax, points
        drawn["texts"] = real_label_points(ax, points, labels, fontsize)
        return drawn["texts"]

    monkeypatch.setattr(report, "label_points", keep)
    paths = write_report(tmp_path, RunReport(RUN))
    assert paths["plot"].stat().st_size > 1000
    assert [x for x, _ in drawn["points"]] == [r.speedup_vs_input for r in RUN]
    assert "speed-up" in drawn["axes"].get_xlabel()
    texts = drawn["texts"]
    # The three stages at one point share a label; no two labels cover each other.
    assert "4:finetune, 5:export, 6:quantize" in [t.get_text() for t in texts]
    figure = drawn["axes"].figure
    renderer = figure.canvas.get_renderer()
    for text in texts:
        text.update_positions(renderer)
    boxes = [Text.get_window_extent(t, renderer) for t in texts]  # the words, not the leader
    assert len(boxes) == 5
    assert all(figure.bbox.contains(box.x0, box.y0) and figure.bbox.contains(box.x1, box.y1)
               for box in boxes)
    for i, box in enumerate(boxes):
        for other in boxes[i + 1:]:
            assert not box.overlaps(other), (box, other)
    markdown = (tmp_path / "report.md").read_text()
    assert "| 1:prune | 10 | 20.0M | 1.40 | 1.24x |" in markdown
    assert "timed interleaved" in markdown

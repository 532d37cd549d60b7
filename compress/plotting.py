"""Figures written to files, drawn through matplotlib's object API (a `Figure` on an Agg
canvas): no pyplot state and no `matplotlib.use`, so a notebook that imports compress keeps
its own backend and its open figures. Saved atomically."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from compress.fileio import atomic_path


def new_figure(size: tuple[float, float]) -> Any:
    """A figure of `size` inches on its own Agg canvas, known to no backend: nothing to
    close, garbage once unreferenced."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size)
    FigureCanvasAgg(figure)
    return figure


@contextmanager
def figure_file(path: str | Path, size: tuple[float, float] = (6, 4),
                dpi: int = 120) -> Iterator[Any]:
    """Yield the axes of a new figure; on leaving the block it is laid out and written to
    `path` (format from its suffix)."""
    figure = new_figure(size)
    yield figure.subplots()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")


def png_bytes(figure: Any, dpi: int = 110) -> bytes:
    """`figure` laid out and rendered as PNG, for a page that embeds it."""
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def label_points(ax: Any, points: list[tuple[float, float]], labels: list[str],
                 fontsize: float = 8) -> list[Any]:
    """Annotate each point with its label so that no two labels overlap: points at the same
    place share one label ("6:export, 7:quantize"), a label that would cover one already
    placed moves up or down by a line, with a thin leader to its point, and labels of points
    in the right half of the axes sit to their left, inside the figure. Lays the figure out
    first (placement is in pixels); returns the labels' artists."""
    from matplotlib.text import Text

    figure = ax.figure
    figure.tight_layout()
    renderer = figure.canvas.get_renderer()
    shared: dict[tuple[float, float], list[str]] = {}
    for (x, y), label in zip(points, labels):
        shared.setdefault((x, y), []).append(label)
    line = fontsize * 1.3  # points
    steps = [0.0] + [sign * k * line for k in range(1, 40) for sign in (1, -1)]
    middle = ax.bbox.x0 + ax.bbox.width / 2
    placed, texts = [], []
    for (x, y), names in sorted(shared.items()):
        left = ax.transData.transform((x, y))[0] > middle
        text = ax.annotate(", ".join(names), (x, y), textcoords="offset points",
                           xytext=(-4 if left else 4, 4), ha="right" if left else "left",
                           fontsize=fontsize,
                           arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.6"})
        text.set_in_layout(False)  # a later layout must not move the axes under the labels
        fewest = None  # where no place is free: the one covering fewest labels, in the figure
        for step in steps:
            text.xyann = (text.xyann[0], 4 + step)
            text.update_positions(renderer)
            box = Text.get_window_extent(text, renderer)  # the words, not the leader
            if not (figure.bbox.y0 <= box.y0 and box.y1 <= figure.bbox.y1):
                continue
            covered = sum(box.overlaps(other) for other in placed)
            if fewest is None or covered < fewest[0]:
                fewest = (covered, step, box)
            if covered == 0:
                break
        if fewest is not None:
            text.xyann = (text.xyann[0], 4 + fewest[1])
            box = fewest[2]
        placed.append(box)
        texts.append(text)
    return texts

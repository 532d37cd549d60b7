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

"""Figures written to files: matplotlib set up once (the Agg backend, no display), the
figure saved atomically and always closed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from compress.fileio import atomic_path


@contextmanager
def figure_file(path: str | Path, size: tuple[float, float] = (6, 4),
                dpi: int = 120) -> Iterator[Any]:
    """Yield the axes of a new figure; on leaving the block it is laid out and written to
    `path` (format from its suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=size)
    try:
        yield axes
        figure.tight_layout()
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")
    finally:
        plt.close(figure)

"""`compress import`: a model (a team's YAML, a torchvision or timm name) and the user's
trained weights as a compress checkpoint."""

from __future__ import annotations

from pathlib import Path

from compress.checkpoint import import_weights, save_checkpoint
from compress.data.folders import find_classes
from compress.errors import UserError
from compress.fileio import check_writable


def class_names(classes: str | None, data_root: str | None) -> list[str]:
    """A `best.pt` stores no class names: take them from exactly one of a comma-separated
    list in label order, or the sorted class folders of DATA/train (or DATA)."""
    if (classes is None) == (data_root is None):
        raise UserError("give exactly one of --classes or --data")
    if classes is not None:
        return [c.strip() for c in classes.split(",") if c.strip()]
    root = Path(data_root)
    return find_classes(root / "train" if (root / "train").is_dir() else root)


def import_checkpoint(model: str | Path, weights: str | Path, out: str | Path,
                      classes: str | None = None, data_root: str | None = None,
                      input_size: int = 224, width_mult: float | None = None
                      ) -> tuple[Path, str]:
    """Write the checkpoint to `out`; its path, and a note when the head was replaced."""
    check_writable(out)
    checkpoint, note = import_weights(model, weights, class_names(classes, data_root),
                                      input_size, width_mult)
    return save_checkpoint(out, checkpoint), note

"""`compress eval`: the metrics of a checkpoint on a split of an image folder."""

from __future__ import annotations

from typing import Any

from compress import defaults
from compress.measure.metrics import classification_metrics, predict


def evaluate_checkpoint(checkpoint_path: str, data_root: str, split: str = "val",
                        batch_size: int = defaults.BATCH_SIZE,
                        num_workers: int = defaults.NUM_WORKERS,
                        device: str = "auto") -> dict[str, Any]:
    """Metrics of a checkpoint on ROOT/SPLIT, read with the test transform at its input size."""
    from compress.checkpoint import load_checkpoint
    from compress.data.folders import ImageFolderDataset, make_loader, split_folder
    from compress.data.transforms import eval_transform
    from compress.device import resolve_device

    checkpoint = load_checkpoint(checkpoint_path)
    dataset = ImageFolderDataset(split_folder(data_root, split), classes=checkpoint.classes,
                                 transform=eval_transform(checkpoint.input_size))
    loader = make_loader(dataset, batch_size, shuffle=False, num_workers=num_workers)
    torch_device = resolve_device(device)
    targets, predictions = predict(checkpoint.model.to(torch_device), loader, torch_device)
    return {"checkpoint": str(checkpoint_path), "split": split,
            **classification_metrics(targets, predictions, checkpoint.classes)}

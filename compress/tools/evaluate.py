"""`compress eval`: the metrics of a checkpoint on a split of an image folder."""

from __future__ import annotations

from typing import Any

from compress import defaults
from compress.measure.metrics import classification_metrics, predict

HELD_OUT = "held-out"


def evaluate_checkpoint(checkpoint_path: str, data_root: str, split: str = "val",
                        batch_size: int = defaults.BATCH_SIZE,
                        num_workers: int = defaults.NUM_WORKERS,
                        device: str = "auto") -> dict[str, Any]:
    """Metrics of a checkpoint on ROOT/SPLIT, read with the test transform at its input size.
    Split `held-out`: the images of ROOT/train the checkpoint records as never trained on."""
    from compress.checkpoint import load_checkpoint
    from compress.data.folders import ImageFolderDataset, make_loader, split_folder
    from compress.data.training_data import split_held_out
    from compress.data.transforms import eval_transform
    from compress.device import resolve_device
    from compress.errors import UserError

    checkpoint = load_checkpoint(checkpoint_path)
    held_out = checkpoint.held_out_files
    if split == HELD_OUT and not held_out:
        raise UserError(f"{checkpoint_path} records no held-out training images (train it "
                        "with CALIBRATION_RATIO in the data YAML)")
    dataset = ImageFolderDataset(split_folder(data_root, "train" if split == HELD_OUT else split),
                                 classes=checkpoint.classes,
                                 transform=eval_transform(checkpoint.input_size))
    if split == HELD_OUT:
        dataset = split_held_out(dataset, held_out)[1]
    loader = make_loader(dataset, batch_size, shuffle=False, num_workers=num_workers)
    torch_device = resolve_device(device)
    targets, predictions = predict(checkpoint.model.to(torch_device), loader, torch_device)
    return {"checkpoint": str(checkpoint_path), "split": split,
            **classification_metrics(targets, predictions, checkpoint.classes)}

"""Classification metrics as the competition computes them (macro F1, zero_division=0)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from compress.data.folders import make_loader


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device | str = "cpu"
            ) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predicted labels over a loader. Leaves the model's train/eval mode as it was."""
    was_training = model.training
    model.eval()
    targets, predictions = [], []
    for images, labels in loader:
        logits = model(images.to(device, non_blocking=True))
        predictions.append(logits.argmax(1).cpu())
        targets.append(labels)
    model.train(was_training)
    return torch.cat(targets).numpy(), torch.cat(predictions).numpy()


def model_macro_f1(model: nn.Module, images: Dataset, classes: list[str],
                   batch_size: int = 64) -> float:
    """Macro F1 of a torch model over a labelled dataset, on the model's device."""
    with torch.no_grad():
        targets, predictions = predict(model, make_loader(images, batch_size, shuffle=False),
                                       next(model.parameters()).device)
    return classification_metrics(targets, predictions, classes)["macro_f1"]


def classification_metrics(targets: np.ndarray, predictions: np.ndarray,
                           classes: list[str]) -> dict[str, Any]:
    """Per-class precision, recall and F1 (0 where undefined, as scikit-learn's
    zero_division=0), their macro mean, accuracy and the confusion matrix. Counted with
    numpy: importing scikit-learn's metrics took 2 s of every command's start."""
    count = len(classes)
    targets, predictions = np.asarray(targets, dtype=np.int64), np.asarray(predictions,
                                                                         dtype=np.int64)
    confusion = np.bincount(targets * count + predictions,
                            minlength=count * count).reshape(count, count)
    hits, support, predicted = np.diag(confusion), confusion.sum(1), confusion.sum(0)
    precision = np.divide(hits, predicted, out=np.zeros(count), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros(count), where=support > 0)
    f1 = np.divide(2 * hits, support + predicted, out=np.zeros(count),
                   where=support + predicted > 0)
    return {
        "macro_f1": float(np.mean(f1)),
        "accuracy": float(np.mean(targets == predictions)) if len(targets) else 0.0,
        "num_images": int(len(targets)),
        "per_class": {
            name: {"f1": float(f1[i]), "precision": float(precision[i]),
                   "recall": float(recall[i]), "support": int(support[i])}
            for i, name in enumerate(classes)
        },
        "confusion_matrix": confusion.tolist(),
    }


def format_metrics(metrics: dict[str, Any], classes: list[str]) -> str:
    """A human-readable report: headline figures, per-class F1, confusion matrix."""
    lines = [f"images {metrics['num_images']}  accuracy {metrics['accuracy']:.4f}  "
             f"macro F1 {metrics['macro_f1']:.4f}", "", f"{'class':<14}{'F1':>7}{'prec':>7}"
             f"{'recall':>8}{'n':>6}"]
    for name in classes:
        row = metrics["per_class"][name]
        lines.append(f"{name:<14}{row['f1']:>7.3f}{row['precision']:>7.3f}"
                     f"{row['recall']:>8.3f}{row['support']:>6d}")
    width = max(6, max(len(c) for c in classes) + 1)
    lines += ["", "confusion matrix (rows: true, columns: predicted)",
              " " * 14 + "".join(f"{c[:width - 1]:>{width}}" for c in classes)]
    for name, row in zip(classes, metrics["confusion_matrix"]):
        lines.append(f"{name:<14}" + "".join(f"{v:>{width}d}" for v in row))
    return "\n".join(lines)

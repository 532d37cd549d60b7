"""How far one image moves macro F1 on val and on the held-out split: at a model's own
predictions, each image it gets wrong is made right alone, and the rise in macro F1 is
averaged over those images, overall and per true class.

    python benchmarks/split_resolution.py [CHECKPOINT] [--data ROOT]

Claim: how fine a difference each split can show. A target of "within 0.5 point" on a
split where one image is worth more than that is a target on one or two images
(benchmarks/RESULTS.md, "Recovery after the cuts"). Under a minute on 2 cores. Output: one line
per split: images, images per class, macro F1, the mean rise for one image, per class.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

import compress

REPO = Path(__file__).resolve().parents[1]


def one_image_rise(truth: np.ndarray, predicted: np.ndarray, classes: int
                   ) -> tuple[float, float, dict[int, float]]:
    """Macro F1 of `predicted`, and the mean rise from making one wrong image right: over
    all wrong images, and per true class of the image."""
    labels = list(range(classes))

    def macro(values: np.ndarray) -> float:
        return float(f1_score(truth, values, labels=labels, average="macro", zero_division=0))

    base = macro(predicted)
    rises: dict[int, list[float]] = {}
    for index in np.flatnonzero(truth != predicted):
        fixed = predicted.copy()
        fixed[index] = truth[index]
        rises.setdefault(int(truth[index]), []).append(macro(fixed) - base)
    every = [rise for values in rises.values() for rise in values]
    return base, float(np.mean(every)) if every else 0.0, \
        {label: float(np.mean(values)) for label, values in sorted(rises.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, nargs="?",
                        default=REPO / "checkpoints" / "mnv3_trashnet.safetensors")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" /
                        "trashnet")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"needs the data at {args.data}")
    checkpoint = compress.load_checkpoint(args.checkpoint)
    classes = checkpoint.classes
    held_out = [args.data / "train" / name for name in checkpoint.held_out_files or []]
    splits = {"val": compress.list_images(args.data / "val"), "held-out": held_out}
    runner = compress.open_model(args.checkpoint, compress.RunnerOptions(runtime="torch"),
                                 checkpoint.input_size).runner
    for name, files in splits.items():
        if not files:
            print(f"{name}: no images (the checkpoint records no held-out split)")
            continue
        truth = np.array([classes.index(path.parent.name) for path in files])
        predicted = np.asarray(compress.predict_files(runner, files, checkpoint.input_size,
                                                      32, workers=0).labels)
        base, overall, rises = one_image_rise(truth, predicted, len(classes))
        counts = np.bincount(truth, minlength=len(classes))
        print(f"{name}: {len(files)} images (" +
              ", ".join(f"{classes[c]} {n}" for c, n in enumerate(counts)) +
              f"); macro F1 {base:.4f}; one wrong image made right: +{100 * overall:.2f} "
              "points on average (by its class: " +
              ", ".join(f"{classes[c]} +{100 * r:.2f}" for c, r in rises.items()) + ")")


if __name__ == "__main__":
    main()

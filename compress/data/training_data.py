"""The train and evaluation splits a run, a fine-tune or an analysis works on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from compress import defaults
from compress.data.config import DataConfig
from compress.data.folders import ImageFolderDataset, progress_log, split_folder
from compress.data.transforms import eval_transform, train_transform
from compress.errors import UserError


def train_val_datasets(config: DataConfig) -> tuple[Dataset, Dataset, list[str]]:
    """The train split with augmentation and the val split with the test transform, their
    images decoded once into the shared cache (CACHE) after every check passed.

    Without a val folder, VAL_RATIO of train (stratified, seeded) becomes val. With
    CALIBRATION_RATIO, that share of what remains of train is left out of training (see
    `calibration_files`).
    """
    root = Path(config.data_path)
    train_dir, val_dir = split_folder(root, "train"), root / "val"
    train = ImageFolderDataset(train_dir, transform=train_transform(config))
    if val_dir.is_dir():
        val = ImageFolderDataset(val_dir, classes=train.classes,
                                 transform=eval_transform(config.img_size))
        train, val = decoded_after_checks([train, val], config.img_size, config.cache)
        train_idx = list(range(len(train)))
    else:
        if config.val_ratio <= 0:
            raise UserError(f"data folder {root}: no val split (add {val_dir} or set VAL_RATIO)")
        train_idx, val_idx = _stratified_split(list(range(len(train))), train.targets,
                                               config.val_ratio, config.held_out_seed)
        train, = decoded_after_checks([train], config.img_size, config.cache)
        val = Subset(train.with_transform(eval_transform(config.img_size)), val_idx)
    train_idx, _ = _calibration_split(train, train_idx, config)
    if len(train_idx) == len(train):
        return train, val, train.classes
    return Subset(train, train_idx), val, train.classes


def decoded_after_checks(splits: list[ImageFolderDataset], size: int, mode: str = "auto"
                         ) -> list[ImageFolderDataset]:
    """`splits` read from the cache of decoded images at `size`, once every file's header
    was read (a corrupt image ends the run here, not after the decode of thousands); the
    class checks were made when the splits were listed."""
    from compress.data.cache import unreadable_headers

    bad = unreadable_headers([path for split in splits for path, _ in split.samples])
    if bad:
        shown = ", ".join(f"{path} ({why})" for path, why in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise UserError(f"{len(bad)} image(s) cannot be read: {shown}{more}")
    return [split.decoded(size, mode) for split in splits]


def calibration_files(config: DataConfig) -> list[str]:
    """The train images `train_val_datasets` leaves out for CALIBRATION_RATIO, relative to
    the train folder, in a stable order (the same for the same files, ratio and seed)."""
    root = Path(config.data_path)
    train_dir = split_folder(root, "train")
    train = ImageFolderDataset(train_dir)
    indices = list(range(len(train)))
    if not (root / "val").is_dir():
        indices, _ = _stratified_split(indices, train.targets, config.val_ratio,
                                       config.held_out_seed)
    _, held_out = _calibration_split(train, indices, config)
    return sorted(str(train.samples[i][0].relative_to(train_dir)) for i in held_out)


def _calibration_split(train: ImageFolderDataset, indices: list[int], config: DataConfig
                       ) -> tuple[list[int], list[int]]:
    if config.calibration_ratio <= 0:
        return indices, []
    targets = [train.targets[i] for i in indices]
    # Another stream than VAL_RATIO's split of the same seed.
    return _stratified_split(indices, targets, config.calibration_ratio,
                             config.held_out_seed + 1)


def _stratified_split(indices: list[int], targets: list[int], ratio: float | int, seed: int
                      ) -> tuple[list[int], list[int]]:
    """`indices` kept and held out, stratified by `targets`: a share (`ratio` below 1) or a
    count of them held out."""
    from sklearn.model_selection import train_test_split

    kept, held_out = train_test_split(indices, test_size=ratio, stratify=targets,
                                      random_state=seed)
    return sorted(kept), sorted(held_out)


@dataclass
class TrainingData:
    """The splits a stage trains and checks on, with their loader settings."""

    train: Dataset
    val: Dataset
    classes: list[str]
    batch_size: int = defaults.BATCH_SIZE
    num_workers: int = defaults.NUM_WORKERS
    # Train images held out of the input model's training (its CALIBRATION_RATIO), with the
    # test transform; None when the checkpoint records none.
    calibration: Dataset | None = None
    # The held-out split as a checkpoint records it ({ratio, seed, files}): the input's, or
    # the one drawn anew from this folder; what the models made from it record in turn.
    held_out_record: dict[str, Any] | None = None

    def held_out_info(self) -> dict[str, Any]:
        """The checkpoint info entry that records the held-out split these splits use ({}
        without one): a model made from them is judged on the same images later."""
        return {} if self.held_out_record is None else {"calibration": self.held_out_record}

    @property
    def decision_split(self) -> Dataset:
        """Where data-driven choices are judged: the calibration split, else val (whose
        figures the choice then flatters)."""
        return self.calibration if self.calibration is not None else self.val

    def calibration_images(self, count: int, img_size: int, seed: int) -> Dataset:
        """`count` training images through the test transform at `img_size`, in a seeded
        order: what BatchNorm re-estimation, sensitivity and INT8 calibration see."""
        return calibration_subset(self.train.with_transform(eval_transform(img_size)), count,
                                  seed)


def resize_training_data(data: TrainingData, img_size: int, aug_train: str = defaults.AUG_TRAIN,
                         aug_train_params: dict[str, Any] | None = None,
                         seed: int = defaults.SEED) -> TrainingData:
    """The same splits (and decoded images) with the transforms rebuilt for `img_size`."""
    config = DataConfig(data_path="", img_size=img_size, aug_train=aug_train,
                        aug_train_params=aug_train_params or {}, seed=seed)
    calibration = None if data.calibration is None else \
        data.calibration.with_transform(eval_transform(img_size), img_size)
    return TrainingData(data.train.with_transform(train_transform(config), img_size),
                        data.val.with_transform(eval_transform(img_size), img_size), data.classes,
                        data.batch_size, data.num_workers, calibration, data.held_out_record)


@dataclass(frozen=True)
class TrainingDataOptions:
    """How `open_training_data` reads the splits: which split evaluates, the training
    augmentation, the loader settings, the cache and the checkpoint's held-out images."""

    split: str = "val"  # the folder under ROOT that evaluates
    aug_train: str = defaults.AUG_TRAIN
    aug_train_params: dict[str, Any] | None = None
    batch_size: int = defaults.BATCH_SIZE
    num_workers: int = defaults.NUM_WORKERS
    seed: int = defaults.SEED
    cache_train: bool = True  # False: train is read from its files (a caller that lists it)
    # The checkpoint's held-out split ({ratio, seed, files}: train files, relative to
    # ROOT/train, that the model never trained on): they become the calibration split and
    # stay out of training. Where none of them is in ROOT/train (other images of the same
    # classes), a new split of the same ratio is drawn; `new_held_out` draws one anyway.
    held_out: dict[str, Any] | None = None
    new_held_out: bool = False
    cache: str = "auto"  # the mode of the shared cache of decoded images


def open_training_data(root: str | Path, classes: list[str], img_size: int,
                       options: TrainingDataOptions = TrainingDataOptions()) -> TrainingData:
    """ROOT/train with augmentation and ROOT/SPLIT with the test transform, for a model that
    predicts `classes` at `img_size` (class folders must match), decoded once into the
    shared cache after every check passed."""
    root = Path(root)
    config = DataConfig(data_path=str(root), img_size=img_size, aug_train=options.aug_train,
                        aug_train_params=options.aug_train_params or {},
                        batch_size=options.batch_size, num_workers=options.num_workers,
                        seed=options.seed)
    train_dir = split_folder(root, "train")
    train = ImageFolderDataset(train_dir, classes=classes, transform=train_transform(config))
    val = ImageFolderDataset(root / options.split, classes=classes,
                             transform=eval_transform(img_size))
    if options.cache_train:
        train, val = decoded_after_checks([train, val], img_size, options.cache)
    else:
        val, = decoded_after_checks([val], img_size, options.cache)
    calibration, record = None, None
    if options.held_out:
        record = held_out_in(train, options.held_out, options.new_held_out)
        train, calibration = split_held_out(train, record["files"])
        calibration = calibration.with_transform(eval_transform(img_size))
    return TrainingData(train, val, list(classes), options.batch_size, options.num_workers,
                        calibration, record)


def held_out_in(train: ImageFolderDataset, recorded: dict[str, Any], draw_new: bool = False
                ) -> dict[str, Any]:
    """The held-out split to use in `train`: the `recorded` one where all its files are
    there; a new one of the same ratio (stratified, seeded by the recorded seed) where none
    is, or where `draw_new`; refused where only part is (the same data with images renamed
    or removed: a new split would mix images the model trained on into it silently)."""
    names = set(recorded["files"])
    present = names & {str(path.relative_to(train.split_dir)) for path, _ in train.samples}
    if present == names and not draw_new:
        return recorded
    if present and not draw_new:
        missing = sorted(names - present)
        raise UserError(f"data folder {train.split_dir}: {len(missing)} of the {len(names)} "
                        f"held-out images the checkpoint records are missing (e.g. "
                        f"{missing[0]}); --new-held-out (a recipe: data.new_held_out: true) "
                        "draws a new held-out split from these images")
    ratio = recorded.get("ratio") or len(names) / (len(names) + len(train))
    seed = int(recorded.get("seed", defaults.SEED))
    indices = list(range(len(train)))
    count = max(round(ratio * len(train)), len(train.classes))  # one image a class at least
    try:
        _, held = _stratified_split(indices, train.targets, count, seed + 1)
    except ValueError as exc:  # a class with a single image, or too few images
        raise UserError(f"data folder {train.split_dir}: cannot hold out {count} of its "
                        f"{len(train)} train images stratified by class ({exc})") from None
    files = sorted(str(train.samples[i][0].relative_to(train.split_dir)) for i in held)
    progress_log.info(
        "held-out split: %s of the %d images the checkpoint holds out of training are in "
        "%s: held out a new %d of its %d (%.0f%%, stratified, seed %d), recorded in the "
        "checkpoints written from here", "none" if not present else len(present), len(names),
        train.split_dir, len(files), len(train), 100 * ratio, seed)
    return {"ratio": ratio, "seed": seed, "files": files}


def split_held_out(train: ImageFolderDataset, held_out: list[str]
                   ) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """`train` without and with the files `held_out` names (relative to its folder); every
    one of them must be there."""
    names = set(held_out)

    def held(path: Path) -> bool:
        return str(path.relative_to(train.split_dir)) in names

    missing = names - {str(p.relative_to(train.split_dir)) for p, _ in train.samples}
    if missing:
        raise UserError(f"data folder {train.split_dir}: {len(missing)} of the {len(names)} "
                        "calibration images the checkpoint records are missing (e.g. "
                        f"{sorted(missing)[0]})")
    return train.subset(lambda path: not held(path)), train.subset(held)


def stratified_share(dataset: Dataset, share: float, seed: int) -> Dataset:
    """`share` of `dataset` (an image folder or a Subset of one), stratified by class and
    seeded: the smaller training set of a search's proxy."""
    if share >= 1:
        return dataset
    base, indices = (dataset.dataset, list(dataset.indices)) if isinstance(dataset, Subset) \
        else (dataset, list(range(len(dataset))))
    targets = [base.targets[i] for i in indices]
    _, kept = _stratified_split(indices, targets, share, seed + 2)  # a stream of its own
    return Subset(base, kept)


def calibration_subset(dataset: Dataset, count: int, seed: int = 0) -> Dataset:
    """`count` items of `dataset` in a seeded random order (spread over the classes): the
    training images that BatchNorm re-estimation, sensitivity and INT8 calibration see."""
    order = np.random.default_rng(seed).permutation(len(dataset))[:count]
    return Subset(dataset, order.tolist())


def in_memory(dataset: Dataset) -> TensorDataset:
    """Every item of `dataset` decoded and transformed once, as tensors: for images that
    many models are judged on in turn (the plan's options)."""
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    return TensorDataset(torch.stack(images), torch.tensor(labels))

"""Image folders, transforms and the competition's data YAML.

Layout: ROOT/{train,val,test}/<class>/*.jpg (torchvision ImageFolder); classes sorted.
Transforms follow the competition: train = square-pad, resize, random-resized-crop, flip,
optional RandAugment; test = square-pad, resize; ImageNet normalisation.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from compress.errors import UserError
from compress.yamlio import read_yaml_file

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
TRAIN_POLICIES = ("simple_augment_train", "randaugment_train")

# Keys of the competition's data YAML that this tool reads, and their field names here.
_YAML_KEYS = {
    "DATA_PATH": "data_path", "IMG_SIZE": "img_size", "AUG_TRAIN": "aug_train",
    "AUG_TRAIN_PARAMS": "aug_train_params", "BATCH_SIZE": "batch_size", "EPOCHS": "epochs",
    "VAL_RATIO": "val_ratio", "INIT_LR": "init_lr", "FP16": "fp16", "SEED": "seed",
    # Additions of ours; the competition files simply do not have them.
    "LABEL_SMOOTHING": "label_smoothing", "WEIGHT_DECAY": "weight_decay",
    "NUM_WORKERS": "num_workers", "GRAD_CLIP": "grad_clip",
}
# Keys the competition files carry that mean nothing here (test policy is fixed).
_IGNORED_KEYS = {"DATASET", "AUG_TEST", "AUG_TEST_PARAMS"}


@dataclass
class DataConfig:
    """The data YAML, typed. Field names are the lower-case competition keys."""

    data_path: str
    img_size: int = 224
    aug_train: str = "simple_augment_train"
    aug_train_params: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 64
    epochs: int = 100
    val_ratio: float = 0.0
    init_lr: float = 0.1
    fp16: bool = True
    seed: int = 42
    label_smoothing: float = 0.0
    weight_decay: float = 0.0
    num_workers: int = 2
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        if self.aug_train not in TRAIN_POLICIES:
            raise UserError(f"AUG_TRAIN: expected one of {', '.join(TRAIN_POLICIES)}, "
                            f"got {self.aug_train!r}")
        for name in ("img_size", "batch_size", "epochs"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UserError(f"{name.upper()}: expected a positive integer, "
                                f"got {getattr(self, name)!r}")
        if not 0.0 <= self.val_ratio < 1.0:
            raise UserError(f"VAL_RATIO: expected a value in [0, 1), got {self.val_ratio}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(f"LABEL_SMOOTHING: expected a value in [0, 1), "
                            f"got {self.label_smoothing}")


def load_data_config(path: str | Path, data_path: str | None = None) -> DataConfig:
    """Read a data YAML with the competition's keys; `data_path` overrides DATA_PATH."""
    path = Path(path)
    raw = read_yaml_file(path, "data config") or {}
    if not isinstance(raw, dict):
        raise UserError(f"data config {path}: expected a mapping of KEY: value")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _YAML_KEYS:
            if value is not None:
                values[_YAML_KEYS[key]] = value
        elif key not in _IGNORED_KEYS:
            log.warning("data config %s: ignoring unknown key %s", path, key)
    if data_path is not None:
        values["data_path"] = data_path
    if "data_path" not in values:
        raise UserError(f"data config {path}: missing key DATA_PATH (or pass --data)")
    try:
        return DataConfig(**values)
    except UserError as exc:
        raise UserError(f"data config {path}: {exc}") from None
    except TypeError as exc:
        raise UserError(f"data config {path}: {exc}") from None


class SquarePad:
    """Pad the shorter side with black so the image is square, keeping it centred."""

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        side = max(width, height)
        if width == height:
            return image
        canvas = Image.new(image.mode, (side, side))
        canvas.paste(image, ((side - width) // 2, (side - height) // 2))
        return canvas


def eval_transform(img_size: int) -> Callable:
    from torchvision import transforms as T

    return T.Compose([SquarePad(), T.Resize((img_size, img_size)), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def train_transform(config: DataConfig) -> Callable:
    from torchvision import transforms as T

    steps: list = [SquarePad(), T.Resize((config.img_size, config.img_size)),
                   T.RandomResizedCrop(config.img_size, scale=(0.5, 1.0)),
                   T.RandomHorizontalFlip()]
    if config.aug_train == "randaugment_train":
        params = config.aug_train_params or {}
        level = params.get("level")
        steps.append(T.RandAugment(num_ops=int(params.get("n_select", 2)),
                                   magnitude=9 if level is None else int(level)))
    steps += [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return T.Compose(steps)


def find_classes(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise UserError(f"data folder {split_dir}: not found")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise UserError(f"data folder {split_dir}: no class folders "
                        f"(expected {split_dir}/<class>/*.jpg)")
    return classes


def read_image(path: Path) -> Image.Image:
    """Decode an image as RGB; a corrupt or unreadable file is the user's error, named."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise UserError(f"image {path}: cannot be read ({exc.__class__.__name__})") from None


class ImageFolderDataset(Dataset):
    """ROOT/<class>/<image> with a fixed class list; optionally keeps decoded images in RAM."""

    def __init__(self, split_dir: str | Path, classes: list[str] | None = None,
                 transform: Callable | None = None, cache: bool = False):
        split_dir = Path(split_dir)
        found = find_classes(split_dir)
        if classes is not None and found != list(classes):
            raise UserError(f"data folder {split_dir}: classes {found} differ from the "
                            f"model's {list(classes)}")
        self.split_dir, self.classes, self.transform = split_dir, found, transform
        self.samples: list[tuple[Path, int]] = []
        for label, name in enumerate(found):
            files = sorted(p for p in (split_dir / name).iterdir()
                           if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise UserError(f"data folder {split_dir / name}: no images")
            self.samples += [(p, label) for p in files]
        self._cache = [read_image(p) for p, _ in self.samples] if cache else None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        image = self._cache[index] if self._cache is not None else read_image(path)
        return (self.transform(image) if self.transform else image), label

    def with_transform(self, transform: Callable | None) -> "ImageFolderDataset":
        """The same images (and decoded cache) under another transform, e.g. the training
        split through the test transform for calibration."""
        view = copy.copy(self)
        view.transform = transform
        return view


def split_folder(root: str | Path, split: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder {root}: not found")
    return root / split


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int = 0,
                seed: int = 0, sampler=None) -> DataLoader:
    """`sampler` (a DistributedSampler under torchrun) replaces shuffling."""
    generator = torch.Generator().manual_seed(seed)
    workers = min(num_workers, os.cpu_count() or 1)
    # A training batch of one image breaks BatchNorm after global pooling: drop it.
    shown = len(sampler) if sampler is not None else len(dataset)
    drop_last = (shuffle or sampler is not None) and shown % batch_size == 1
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None,
                      sampler=sampler, num_workers=workers, generator=generator,
                      persistent_workers=workers > 0, drop_last=drop_last)


def train_val_datasets(config: DataConfig, cache: bool = True) -> tuple[Dataset, Dataset, list[str]]:
    """The train split with augmentation and the val split with the test transform.

    Without a val folder, VAL_RATIO of train (stratified, seeded) becomes val.
    """
    from torch.utils.data import Subset

    root = Path(config.data_path)
    train_dir, val_dir = split_folder(root, "train"), root / "val"
    train = ImageFolderDataset(train_dir, transform=train_transform(config), cache=cache)
    if val_dir.is_dir():
        val = ImageFolderDataset(val_dir, classes=train.classes,
                                 transform=eval_transform(config.img_size), cache=cache)
        return train, val, train.classes
    if config.val_ratio <= 0:
        raise UserError(f"data folder {root}: no val split (add {val_dir} or set VAL_RATIO)")
    from sklearn.model_selection import train_test_split

    indices = list(range(len(train)))
    train_idx, val_idx = train_test_split(indices, test_size=config.val_ratio,
                                          stratify=train.targets, random_state=config.seed)
    val_view = ImageFolderDataset(train_dir, classes=train.classes,
                                  transform=eval_transform(config.img_size), cache=False)
    val_view._cache = train._cache  # same files, same order: share the decoded images
    return Subset(train, train_idx), Subset(val_view, val_idx), train.classes


@dataclass
class TrainingData:
    """The splits a stage trains and checks on, with their loader settings."""

    train: Dataset
    val: Dataset
    classes: list[str]
    batch_size: int = 64
    num_workers: int = 2


def resize_training_data(data: TrainingData, img_size: int, aug_train: str = "randaugment_train",
                         aug_train_params: dict[str, Any] | None = None,
                         seed: int = 42) -> TrainingData:
    """The same splits (and decoded images) with the transforms rebuilt for `img_size`."""
    config = DataConfig(data_path="", img_size=img_size, aug_train=aug_train,
                        aug_train_params=aug_train_params or {}, seed=seed)
    return TrainingData(data.train.with_transform(train_transform(config)),
                        data.val.with_transform(eval_transform(img_size)), data.classes,
                        data.batch_size, data.num_workers)


def open_training_data(root: str | Path, classes: list[str], img_size: int, split: str = "val",
                       aug_train: str = "randaugment_train",
                       aug_train_params: dict[str, Any] | None = None, batch_size: int = 64,
                       num_workers: int = 2, seed: int = 42,
                       cache_train: bool = True) -> TrainingData:
    """ROOT/train with augmentation and ROOT/SPLIT with the test transform, for a model that
    predicts `classes` at `img_size` (class folders must match)."""
    root = Path(root)
    config = DataConfig(data_path=str(root), img_size=img_size, aug_train=aug_train,
                        aug_train_params=aug_train_params or {}, batch_size=batch_size,
                        num_workers=num_workers, seed=seed)
    train = ImageFolderDataset(split_folder(root, "train"), classes=classes,
                               transform=train_transform(config), cache=cache_train)
    val = ImageFolderDataset(root / split, classes=classes, transform=eval_transform(img_size),
                             cache=True)
    return TrainingData(train, val, list(classes), batch_size, num_workers)

"""Transforms follow the competition: train = square-pad, resize, random-resized-crop, flip,
optional RandAugment; test = square-pad, resize; ImageNet normalisation.
"""

from __future__ import annotations

from typing import Callable

from compress.data.config import DataConfig
from compress.data.images import SquarePad

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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

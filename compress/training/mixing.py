"""Mixup and CutMix of a training batch (Zhang et al. 2018; Yun et al. 2019): each batch,
with probability `prob`, is blended with itself in reversed order, by a weight drawn from
Beta(alpha, alpha): mixup blends whole images, CutMix pastes a box of the other image
whose area share is 1 - weight (the weight then follows the box as clipped to the image).
Where both alphas are set, each mixed batch picks one of the two at even odds.

The labels mix by the same weight: the loss takes class probabilities. In function
matching the teacher sees the mixed images too: the student learns to match it on images
between the training images, not only on them (Beyer et al. 2022).

Draws come from torch's global generator, which the epoch loop seeds per epoch, so a
resumed run mixes its batches as an uninterrupted one did.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Mixing:
    mixup_alpha: float = 0.0  # 0: no mixup
    cutmix_alpha: float = 0.0  # 0: no CutMix
    prob: float = 1.0  # the share of batches mixed

    @property
    def active(self) -> bool:
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)


def mix_batch(images: torch.Tensor, labels: torch.Tensor, classes: int, mixing: Mixing
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch mixed (or not), and its labels as class probabilities [batch, classes]."""
    targets = torch.nn.functional.one_hot(labels, classes).to(images.dtype)
    if not mixing.active or torch.rand(()).item() >= mixing.prob:
        return images, targets
    kinds = [kind for kind, alpha in (("mixup", mixing.mixup_alpha),
                                      ("cutmix", mixing.cutmix_alpha)) if alpha > 0]
    kind = kinds[int(torch.randint(len(kinds), ()).item())]
    alpha = mixing.mixup_alpha if kind == "mixup" else mixing.cutmix_alpha
    weight = float(torch.distributions.Beta(alpha, alpha).sample())
    other = images.flip(0)
    if kind == "mixup":
        mixed = images * weight + other * (1.0 - weight)
    else:
        mixed, weight = _pasted_box(images, other, weight)
    return mixed, targets * weight + targets.flip(0) * (1.0 - weight)


def _pasted_box(images: torch.Tensor, other: torch.Tensor, weight: float
                ) -> tuple[torch.Tensor, float]:
    """`other`'s box of area share about 1 - weight pasted into `images` at a uniform
    centre; the weight recomputed from the box as clipped to the image."""
    height, width = images.shape[-2:]
    side = (1.0 - weight) ** 0.5
    box_h, box_w = int(height * side), int(width * side)
    centre_y = int(torch.randint(height, ()).item())
    centre_x = int(torch.randint(width, ()).item())
    top, bottom = max(centre_y - box_h // 2, 0), min(centre_y + box_h // 2, height)
    left, right = max(centre_x - box_w // 2, 0), min(centre_x + box_w // 2, width)
    mixed = images.clone()
    mixed[..., top:bottom, left:right] = other[..., top:bottom, left:right]
    return mixed, 1.0 - (bottom - top) * (right - left) / (height * width)

"""Reading one image as RGB and square-padding it: Pillow and numpy only, so that the
processes that decode the image cache (compress.data.cache) start without torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from compress.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def read_image(path: Path) -> Image.Image:
    """Decode an image as RGB; a corrupt, unreadable or absurdly large file (a
    decompression bomb) is the user's error, named."""
    try:
        with Image.open(path) as image:
            return _as_rgb(image)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"image {path}: cannot be read ({exc.__class__.__name__})") from None


def _as_rgb(image: Image.Image) -> Image.Image:
    """RGB with 8 bits a channel. Pillow's convert("RGB") clips 16-bit and 32-bit
    greyscale instead of scaling it (a 16-bit PNG came out solid white): scale those."""
    if image.mode.startswith("I;16") or image.mode == "I":
        levels = np.asarray(image, dtype=np.float64).clip(0, 65535) / 257.0
    elif image.mode == "F":
        levels = np.asarray(image, dtype=np.float64)
        levels = levels * 255.0 if levels.size and levels.max() <= 1.0 else levels
    else:
        return image.convert("RGB")
    return Image.fromarray(np.round(levels.clip(0, 255)).astype(np.uint8)).convert("RGB")


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

    def __repr__(self) -> str:  # part of a training run's fingerprint: no address
        return "SquarePad()"

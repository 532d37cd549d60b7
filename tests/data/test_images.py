"""Every image mode Pillow opens becomes the right RGB picture; a decompression bomb is a
one-line user error, not a traceback."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from compress.data.folders import read_image
from compress.errors import UserError


def test_16_bit_greyscale_is_scaled_not_clipped_to_white(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    deep, shallow = tmp_path / "deep.png", tmp_path / "shallow.png"
    Image.fromarray(ramp).save(deep)  # 16-bit greyscale PNG
    Image.fromarray((ramp // 257).astype(np.uint8)).save(shallow)  # the same at 8 bits
    assert Image.open(deep).mode.startswith("I")
    rgb = np.asarray(read_image(deep)).astype(int)
    expected = np.asarray(read_image(shallow)).astype(int)
    assert rgb.shape == (48, 64, 3) and rgb.min() == 0 and rgb.max() == 255
    assert np.abs(rgb - expected).max() <= 1


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "1", "I", "F"])
def test_every_common_mode_reads_as_rgb(tmp_path, mode):
    picture = Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (16, 1)))
    if mode in ("I", "F"):
        picture = Image.fromarray(np.asarray(picture).astype(np.int32 if mode == "I"
                                                              else np.float32) * 257
                                  if mode == "I" else np.asarray(picture, np.float32) / 255)
    else:
        picture = picture.convert(mode)
    path = tmp_path / f"image.{'tiff' if mode in ('I', 'F', 'CMYK') else 'png'}"
    picture.save(path)
    rgb = np.asarray(read_image(path))
    assert rgb.dtype == np.uint8 and rgb.shape == (16, 64, 3)
    if mode not in ("1", "P"):  # a greyscale ramp stays a ramp
        assert rgb[0, -1, 0] > 200 and rgb[0, 0, 0] < 30


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + \
        chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_a_user_error(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(20000, 20000))
    with pytest.raises(UserError, match="bomb.png"):
        read_image(bomb)

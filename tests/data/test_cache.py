"""The decoded-image cache (issue 19, draft): the same tensors as decoding each time, one
file that pickles as its path, and the mode chosen by size."""

from __future__ import annotations

import os
import pickle

import torch

from compress.data.cache import (
    DecodedImages,
    build_cache,
    cache_key,
    choose_mode,
    unreadable_headers,
)
from compress.data.config import DataConfig
from compress.data.folders import ImageFolderDataset, read_image
from compress.data.transforms import eval_transform, train_transform


def test_cached_images_give_the_tensors_of_the_files(tiny_data, tmp_path):
    files = [path for path, _ in ImageFolderDataset(tiny_data / "train").samples]
    cached = build_cache(files, 24, tmp_path / "cache", read_image)
    config = DataConfig(data_path="", img_size=24, aug_train="randaugment_train",
                        aug_train_params={"n_select": 2, "level": 9})
    for transform in (train_transform(config), eval_transform(24)):
        for index, path in enumerate(files):
            torch.manual_seed(index)
            expected = transform(read_image(path))
            torch.manual_seed(index)
            assert torch.equal(transform(cached[index]), expected), path
    # Decoded by two processes: the same rows, with progress to the last image.
    seen = []
    parallel = build_cache(files, 24, tmp_path / "parallel", read_image, workers=2,
                           progress=lambda done, total: seen.append((done, total)))
    assert (parallel.rows == cached.rows).all() and seen[-1] == (len(files), len(files))
    # A second build finds the file; a worker gets the path, not the rows.
    again = build_cache(files, 24, tmp_path / "cache", read_image)
    assert again.path == cached.path and len(list((tmp_path / "cache").glob("*.npy"))) == 1
    shipped = pickle.dumps(cached)
    assert len(shipped) < 1000 and len(pickle.loads(shipped)) == len(files)
    assert isinstance(pickle.loads(shipped), DecodedImages)


def test_the_key_follows_the_files_and_the_size(tiny_data):
    files = sorted((tiny_data / "val").rglob("*.png"))
    assert cache_key(files, 24) == cache_key(files, 24) != cache_key(files, 32)
    before = cache_key(files, 24)
    stat = files[0].stat()
    os.utime(files[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file changed
    assert cache_key(files, 24) != before
    assert cache_key(files[1:], 24) != cache_key(files, 24)


def test_the_mode_follows_the_size(tmp_path):
    assert choose_mode(10, 32, tmp_path).mode == "ram"
    huge = choose_mode(10, 32, tmp_path, memory_share=1e-12)
    assert huge.mode == "disk" and "fits on disk" in huge.reason
    assert choose_mode(10**12, 512, tmp_path).mode == "stream"
    assert choose_mode(10, 32, tmp_path, requested="stream").mode == "stream"


def test_a_corrupt_image_is_found_from_its_header(tiny_data, tmp_path):
    files = sorted((tiny_data / "val").rglob("*.png"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(files[0].read_bytes()[:20])  # cut inside the header
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    assert unreadable_headers(files) == []
    assert [path for path, _ in unreadable_headers(files + [broken, text])] == [broken, text]

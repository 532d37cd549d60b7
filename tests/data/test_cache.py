"""The decoded-image cache: the same tensors as decoding each time, one file that pickles as
its path (spawn workers map it instead of copying it), the mode chosen by size, and the
checks made before anything is decoded."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from compress.data.cache import (
    DecodedImages,
    build_cache,
    cache_key,
    choose_mode,
    requested_mode,
    unreadable_headers,
)
from compress.data.config import DataConfig
from compress.data.folders import ImageFolderDataset, make_loader, read_image
from compress.data.training_data import open_training_data
from compress.data.transforms import eval_transform, train_transform
from compress.errors import UserError


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


def test_the_mode_follows_the_size(tmp_path, monkeypatch):
    import compress.data.cache as cache

    small = choose_mode(10, 32, tmp_path)
    assert small.mode == "disk" and "stays in the page cache" in small.reason
    over = choose_mode(10, 32, tmp_path, share=1e-12)  # a tiny memory budget
    assert over.mode == "disk" and "read it back from disk" in over.reason
    assert choose_mode(10**12, 512, tmp_path).mode == "stream"
    assert choose_mode(10, 32, tmp_path, requested="stream").mode == "stream"
    # A disk without room: memory when it fits the share, else streaming.
    real = shutil.disk_usage
    full = real(tmp_path)._replace(free=100)
    monkeypatch.setattr(cache.shutil, "disk_usage",
                        lambda path: full if Path(path) == tmp_path else real(path))
    assert choose_mode(10, 32, tmp_path).mode == "ram"
    assert choose_mode(10, 32, tmp_path, share=1e-12).mode == "stream"


def test_the_mode_asked_for_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("COMPRESS_IMAGE_CACHE", "stream")
    assert requested_mode("auto") == "stream" and requested_mode("disk") == "disk"
    monkeypatch.setenv("COMPRESS_IMAGE_CACHE", "memory")
    with pytest.raises(UserError, match="COMPRESS_IMAGE_CACHE|expected one of"):
        requested_mode("auto")
    monkeypatch.setenv("COMPRESS_CACHE_MEMORY_SHARE", "2")
    with pytest.raises(UserError, match="COMPRESS_CACHE_MEMORY_SHARE"):
        choose_mode(10, 32, Path("."))


def test_spawned_loader_workers_read_the_file_not_a_copy(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESS_CACHE_DIR", str(tmp_path))
    dataset = ImageFolderDataset(tiny_data / "train", transform=eval_transform(24)).decoded(24)
    assert len(pickle.dumps(dataset)) < 20_000  # the file's path and the list, not the rows
    assert dataset._cache.rows.nbytes == 36 * 24 * 24 * 3
    loaders = [DataLoader(dataset, batch_size=8, num_workers=workers,
                          multiprocessing_context="spawn" if workers else None)
               for workers in (0, 2)]
    for (a, labels_a), (b, labels_b) in zip(*loaders):
        assert torch.equal(a, b) and torch.equal(labels_a, labels_b)


def test_a_class_mismatch_or_a_corrupt_image_ends_before_any_decode(tiny_data, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setenv("COMPRESS_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    with pytest.raises(UserError, match="differ from the model's"):
        open_training_data(root, ["blue", "green", "yellow"], 24)
    (root / "val" / "green" / "cut.png").write_bytes(
        next((root / "val" / "green").glob("*.png")).read_bytes()[:20])
    with pytest.raises(UserError, match=r"1 image\(s\) cannot be read: .*cut.png"):
        open_training_data(root, ["blue", "green", "red"], 24)
    assert not list(tmp_path.rglob("images-*.npy"))  # train was not decoded either
    (root / "val" / "green" / "cut.png").unlink()
    data = open_training_data(root, ["blue", "green", "red"], 24)
    assert len(list(tmp_path.rglob("images-*.npy"))) == 2  # train and val
    assert data.train._cache is not None and data.val._cache is not None


def test_a_corrupt_image_is_found_from_its_header(tiny_data, tmp_path):
    files = sorted((tiny_data / "val").rglob("*.png"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(files[0].read_bytes()[:20])  # cut inside the header
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    assert unreadable_headers(files) == []
    assert [path for path, _ in unreadable_headers(files + [broken, text])] == [broken, text]


def test_a_large_set_says_where_its_cache_went_and_why(tiny_data, tmp_path, monkeypatch):
    import logging

    import compress.data.folders as folders

    monkeypatch.setenv("COMPRESS_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("COMPRESS_IMAGE_CACHE")  # the suite's "disk": let auto choose
    monkeypatch.setattr(folders, "PARALLEL_DECODE_FROM", 10)  # tiny_data's 36 are "large"
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    folders.progress_log.addHandler(handler)
    monkeypatch.setattr(folders.progress_log, "level", logging.INFO)
    try:
        ImageFolderDataset(tiny_data / "train").decoded(24, "auto")
        ImageFolderDataset(tiny_data / "train").decoded(24, "stream")
    finally:
        folders.progress_log.removeHandler(handler)
    assert lines[0].startswith("image cache: disk (36 images at 24 px take 0.00 GiB, within")
    assert lines[1].startswith("decoding 36 images in 2 process(es): 36/36 (100 %)")
    assert lines[2].startswith("image cache: stream (asked for")


def test_a_disk_without_room_is_an_error_before_any_decode(tiny_data, tmp_path, monkeypatch):
    import errno

    import compress.data.cache as cache

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache.os, "posix_fallocate", full, raising=False)
    files = sorted((tiny_data / "val").rglob("*.png"))
    with pytest.raises(UserError, match="cannot be written .*No space left"):
        build_cache(files, 24, tmp_path, lambda path: pytest.fail("decoded"))
    assert not list(tmp_path.glob("*.npy"))  # nothing half-written is left to be mistaken


def test_a_subset_resized_reads_its_own_images(tiny_data, tmp_path, monkeypatch):
    """A held-out split (a subset of train's rows) through a resize stage: decoded again at
    the new size, each index still the same file."""
    monkeypatch.setenv("COMPRESS_CACHE_DIR", str(tmp_path))
    train = ImageFolderDataset(tiny_data / "train", transform=eval_transform(24)).decoded(24)
    greens = train.subset(lambda path: path.parent.name == "green")
    resized = greens.with_transform(eval_transform(16), 16)
    assert resized._cache.size == 16 and len(resized) == 12
    for index, (path, label) in enumerate(greens.samples):
        assert torch.equal(resized[index][0], eval_transform(16)(read_image(path)))
        assert resized[index][1] == label == 1


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="Linux's /proc/self/maps")
def test_rows_are_read_without_mapping_the_file(tiny_data, tmp_path, monkeypatch):
    """A mapped cache puts every page an epoch touches in the process's resident set (and
    the OOM killer's count); read rows leave them in the page cache only."""
    monkeypatch.setenv("COMPRESS_CACHE_DIR", str(tmp_path))
    dataset = ImageFolderDataset(tiny_data / "train", transform=eval_transform(24)).decoded(24)
    files = ImageFolderDataset(tiny_data / "train", transform=eval_transform(24))
    for index in (0, len(dataset) - 1, -1):
        assert torch.equal(dataset[index][0], files[index][0])
    assert str(dataset._cache.path) not in Path("/proc/self/maps").read_text()
    with pytest.raises(IndexError):
        dataset._cache[len(dataset)]


def test_evaluation_of_decoded_images_runs_in_process_and_training_in_workers(
        tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESS_CACHE_DIR", str(tmp_path))
    streamed = ImageFolderDataset(tiny_data / "train", transform=eval_transform(24))
    decoded = streamed.decoded(24)
    assert make_loader(decoded, 8, shuffle=False, num_workers=2).num_workers == 0
    assert make_loader(decoded, 8, shuffle=True, num_workers=2).num_workers == 2
    assert make_loader(streamed, 8, shuffle=False, num_workers=2).num_workers == 2

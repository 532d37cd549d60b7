"""`compress predict` on a folder made in the test: one row per image, valid classes,
both output formats, the same predictions as torch, and bad input."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from conftest import TINY_CLASSES, assert_user_error, make_image_folder, run_cli

from compress.checkpoint import Checkpoint, save_checkpoint
from compress.data.folders import read_image
from compress.data.transforms import eval_transform
from compress.measure.end_to_end import list_images
from compress.ops.onnx_export import export_onnx


@pytest.fixture()
def images(tmp_path):
    return make_image_folder(tmp_path / "imgs", {"test": 3}) / "test"


def _torch_predictions(model, files) -> list[str]:
    transform = eval_transform(32)
    with torch.no_grad():
        logits = model(torch.stack([transform(read_image(f)) for f in files]))
    return [TINY_CLASSES[i] for i in logits.argmax(1)]


@pytest.mark.parametrize("batch", ["1", "4"])
def test_csv_has_a_row_per_image_with_the_model_prediction(tmp_path, tiny_onnx, tiny_model,
                                                           images, batch):
    out = tmp_path / "submission.csv"
    code, output = run_cli(["predict", tiny_onnx, "--images", images, "--out", out,
                            "--batch", batch, "--workers", "1"])
    assert code == 0, output
    assert "images/s end to end" in output
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    files = list_images(images)
    assert [row["file"] for row in rows] == [f.relative_to(images).as_posix() for f in files]
    assert [row["class"] for row in rows] == _torch_predictions(tiny_model, files)


def test_json_format_and_a_checkpoint_model(tmp_path, tiny_model, tiny_model_spec, images):
    checkpoint = save_checkpoint(tmp_path / "tiny.safetensors",
                                 Checkpoint(tiny_model, tiny_model_spec, TINY_CLASSES, 32))
    out = tmp_path / "submission.csv"
    code, output = run_cli(["predict", checkpoint, "--images", images, "--out", out,
                            "--format", "json", "--workers", "0", "--batch", "5"])
    assert code == 0, output
    predicted = json.loads(out.read_text())
    files = list_images(images)
    assert list(predicted) == [f.relative_to(images).as_posix() for f in files]
    assert list(predicted.values()) == _torch_predictions(tiny_model, files)


def test_an_empty_folder_is_named(tmp_path, tiny_onnx):
    (tmp_path / "empty").mkdir()
    assert_user_error(["predict", tiny_onnx, "--images", tmp_path / "empty", "--out",
                       tmp_path / "s.csv"], "no images")


def test_an_unreadable_image_is_named_and_the_old_output_survives(tmp_path, tiny_onnx, images):
    (images / "red" / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "submission.csv"
    out.write_text("previous results\n")
    code, output = run_cli(["predict", tiny_onnx, "--images", images, "--out", out,
                            "--workers", "1"])
    assert code == 2, output
    # The progress line ("predicting N images ...") comes first; the error is one line.
    error = output.strip().splitlines()[-1]
    assert error.startswith("error: image ") and "broken.jpg" in error
    assert "cannot be read" in error and "Traceback" not in output
    assert out.read_text() == "previous results\n"


def test_a_model_without_class_names_needs_them(tmp_path, tiny_model, images):
    bare = export_onnx(tiny_model, tmp_path / "bare.onnx", 32)
    assert_user_error(["predict", bare, "--images", images, "--out", tmp_path / "s.csv"],
                      "--classes")
    code, output = run_cli(["predict", bare, "--images", images, "--out", tmp_path / "s.csv",
                            "--classes", "a,b,c", "--workers", "0"])
    assert code == 0, output
    classes = {row.split(",")[1] for row in (tmp_path / "s.csv").read_text().split()[1:]}
    assert classes <= {"a", "b", "c"}


def test_predictions_are_deterministic_across_worker_counts(tmp_path, tiny_onnx, images):
    outputs = []
    for workers in ("0", "2"):
        out = tmp_path / f"s{workers}.csv"
        assert run_cli(["predict", tiny_onnx, "--images", images, "--out", out,
                        "--workers", workers])[0] == 0
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1]

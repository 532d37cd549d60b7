"""Faults of the machine that a test cannot cause for real (CI runs as root, so permissions
do not bite; a full or read-only disk needs a mount): the file call raises the error the
machine would, and the command must end as for a user's mistake (exit 2, one `error:`
line naming the file) with nothing that was there before lost or changed, and nothing
new left behind (no empty folder, no `*.tmp`)."""

from __future__ import annotations

import builtins
import errno
import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_cli, write_tiny_recipe

_WRITE_MODES = set("wax+")


def _fail_opens(monkeypatch, fault: int, should_fail: Callable[[Path, str], bool]) -> None:
    """Make Python-level opens of the matching paths raise OSError(`fault`) as the kernel
    would (strerror and filename set)."""
    real_open = io.open

    def faulty_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and should_fail(Path(file), mode):
            raise OSError(fault, os.strerror(fault), str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", faulty_open)
    monkeypatch.setattr(io, "open", faulty_open)


def _writes_under(folder: Path) -> Callable[[Path, str], bool]:
    return lambda path, mode: bool(_WRITE_MODES & set(mode)) and \
        path.absolute().is_relative_to(folder.absolute())


def _snapshot(root: Path) -> dict[Path, bytes | None]:
    return {p: (p.read_bytes() if p.is_file() else None) for p in root.rglob("*")}


def _assert_one_error(args, *fragments) -> str:
    code, output = run_cli(args)
    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_predict_onto_a_full_disk_fails_before_any_work_and_keeps_the_old_file(
        monkeypatch, tmp_path, tiny_checkpoint, tiny_data):
    from compress.tools import predict

    submissions = tmp_path / "submissions"
    submissions.mkdir()
    (submissions / "old.csv").write_text("image,label\nkept\n")
    before = _snapshot(tmp_path)
    monkeypatch.setattr(predict, "list_images", lambda _: pytest.fail("work before the check"))
    _fail_opens(monkeypatch, errno.ENOSPC, _writes_under(submissions))
    _assert_one_error(["predict", tiny_checkpoint, "--images", tiny_data / "val",
                       "--out", submissions / "new" / "sub.csv"],
                      "--out", "No space left on device")
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("fault, words", [(errno.EROFS, "Read-only file system"),
                                          (errno.EACCES, "Permission denied")])
def test_export_onto_a_folder_that_cannot_be_written(
        fault, words, monkeypatch, tmp_path, tiny_checkpoint):
    locked = tmp_path / "locked"
    locked.mkdir()
    before = _snapshot(tmp_path)
    _fail_opens(monkeypatch, fault, _writes_under(locked))
    _assert_one_error(["export", tiny_checkpoint, "--out", locked / "m.onnx"], "--out", words)
    assert _snapshot(tmp_path) == before


def test_a_run_whose_disk_fills_after_a_finished_stage_keeps_that_stage_and_resumes(
        monkeypatch, tmp_path, tiny_checkpoint, tiny_data):
    """The disk fills while the second stage's record is written: one error line, the
    first stage's files intact, no temporary file left; with space again, --resume
    finishes the run without redoing the first stage."""
    recipe = write_tiny_recipe(tmp_path / "recipe.yaml", tiny_checkpoint, tiny_data,
                               [{"prune": {"ratio": 0.25}}, {"prune": {"ratio": 0.25}}])
    run = tmp_path / "run"
    second_stage = run / "stages" / "02-prune"

    real_open = io.open
    first_stage_files: dict[Path, bytes] = {}

    def fills_at_second_record(path: Path, mode: str) -> bool:
        full = bool(_WRITE_MODES & set(mode)) and path.name.startswith("record.json") and \
            path.absolute().is_relative_to(second_stage.absolute())
        if full and not first_stage_files:
            first_stage_files.update({p: p.read_bytes() for p in (run / "stages").rglob("*")
                                      if p.is_file() and "01-prune" in p.parts})
        return full

    _fail_opens(monkeypatch, errno.ENOSPC, fills_at_second_record)
    code, output = run_cli(["run", recipe, "--out", run])
    assert code == 2, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert errors == [output.strip().splitlines()[-1]], output
    assert errors[0].endswith("02-prune/record.json: No space left on device"), output
    assert first_stage_files, "the fault never fired"
    assert {p: p.read_bytes() for p in first_stage_files} == first_stage_files
    assert not list(run.rglob("*.tmp"))

    monkeypatch.setattr(builtins, "open", real_open)
    monkeypatch.setattr(io, "open", real_open)
    code, output = run_cli(["run", recipe, "--out", run, "--resume"])
    assert code == 0, output
    assert {p: p.read_bytes() for p in first_stage_files} == first_stage_files
    assert (second_stage / "record.json").is_file()


def test_an_image_the_user_may_not_read_is_named(monkeypatch, tmp_path, tiny_checkpoint,
                                                  tiny_data):
    secret = next((tiny_data / "val").rglob("*.png"))
    from PIL import Image

    real_image_open = Image.open

    def denied(fp, *args, **kwargs):
        if Path(fp) == secret:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(fp))
        return real_image_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", denied)
    _assert_one_error(["eval", tiny_checkpoint, "--data", tiny_data], secret.name,
                      "cannot be read")


def test_a_data_folder_the_user_may_not_list_is_named(monkeypatch, tiny_checkpoint,
                                                       tiny_data):
    hidden = tiny_data / "val"
    real_iterdir = Path.iterdir

    def denied(self):
        if self == hidden:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", denied)
    _assert_one_error(["eval", tiny_checkpoint, "--data", tiny_data], str(hidden),
                      "Permission denied")

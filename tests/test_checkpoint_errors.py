"""A checkpoint file that is not good safetensors is a user's error naming it; anything else
that goes wrong while reading it (memory, a bug) is not blamed on the file."""

from __future__ import annotations

import pytest
import safetensors
from conftest import save_tiny_checkpoint

from compress.checkpoint import load_checkpoint
from compress.errors import UserError


def test_a_truncated_checkpoint_is_a_user_error_naming_it(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UserError, match="tiny.safetensors: corrupt safetensors file"):
        load_checkpoint(path)


def test_running_out_of_memory_while_reading_is_not_a_corrupt_file(tmp_path, monkeypatch):
    path = save_tiny_checkpoint(tmp_path / "tiny.safetensors")

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(safetensors, "safe_open", out_of_memory)
    with pytest.raises(MemoryError):
        load_checkpoint(path)

"""What `resume` finds in a training folder: nothing (a fresh start), or a train state that
cannot be read, which is an error naming the file, never a silent restart over its epochs."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from compress.errors import UserError
from compress.training.checkpointing import STATE_NAME, TrainedState, resume


def _resume(folder):
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    return resume(folder, TrainedState(model, optimizer, scheduler), started_as="this run")


def test_a_folder_without_a_train_state_starts_fresh(tmp_path):
    assert _resume(tmp_path) is None


@pytest.mark.parametrize("write, reason", [
    (lambda path: path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all"),
     "cannot be read"),
    (lambda path: path.write_bytes(b"half a file"), "cannot be read"),
    (lambda path: save_file({"model/w": torch.zeros(1)}, str(path),
                            metadata={"train_state": "{\"epoch\": 3"}), "not JSON"),
    (lambda path: save_file({"model/w": torch.zeros(1)}, str(path),
                            metadata={"train_state": "[3]"}), "not a JSON object"),
], ids=["header not JSON", "truncated", "counters not JSON", "counters not an object"])
def test_a_train_state_that_cannot_be_read_is_a_user_error_naming_it(tmp_path, write, reason):
    path = tmp_path / STATE_NAME
    write(path)
    before = path.read_bytes()
    with pytest.raises(UserError, match=reason) as raised:
        _resume(tmp_path)
    message = str(raised.value)
    assert str(path) in message and "\n" not in message
    assert path.read_bytes() == before  # left for the user to look at

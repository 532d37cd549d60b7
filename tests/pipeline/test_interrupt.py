"""Killed in the middle of a fine-tune, or between stages, a run resumes to the result of an
uninterrupted one: finished stages are untouched, the fine-tune continues from its last
finished epoch, and the final weights are the same bit for bit (CPU)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import save_tiny_checkpoint, write_tiny_recipe

from compress.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, tiny_data) -> Path:
    folder = tmp_path_factory.mktemp("interrupt")
    return write_tiny_recipe(folder / "recipe.yaml",
                             save_tiny_checkpoint(folder / "tiny.safetensors"), tiny_data,
                             [{"prune": {"ratio": 0.25}}, {"finetune": {"epochs": 6, "lr": 0.05}},
                              {"drop": {"squeeze_excite": "all"}}, {"export": {"fp16": False}}])


@pytest.fixture(scope="module")
def straight_weights(recipe) -> dict[str, torch.Tensor]:
    """The uninterrupted run's final weights, run once for every way of interrupting it."""
    straight = recipe.parent / "straight"
    subprocess.run(_command(recipe, straight), check=True, capture_output=True)
    return _final_weights(straight)


def _command(recipe: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "compress", "run", str(recipe), "--out", str(out), *extra]


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, "the run ended before the moment to interrupt it"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _as_in_a_terminal() -> None:
    """Ctrl-C as in a terminal: a suite started in the background (`cmd &` in a script)
    passes SIGINT ignored on to its children, and Python then never raises
    KeyboardInterrupt (seen: the interrupted run went on and finished)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(out / "stages/04-export/model.safetensors").model.state_dict()


@pytest.mark.parametrize("sig, moment", [
    (signal.SIGKILL, "stages/02-finetune/train/train_state.safetensors"),  # mid fine-tune
    (signal.SIGINT, "stages/02-finetune/train/train_state.safetensors"),
    (signal.SIGKILL, "stages/03-drop/record.json"),  # between stages
])
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, recipe,
                                                                straight_weights, sig, moment):
    out = tmp_path / "interrupted"
    process = subprocess.Popen(_command(recipe, out), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=_as_in_a_terminal)
    _wait_for(out / moment, process)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0, stderr
    if sig == signal.SIGINT:
        assert "Traceback" not in stderr and "--resume" in stderr, stderr
    finished = {p: p.read_bytes() for p in out.glob("stages/*/record.json")}
    assert finished  # at least the input and the prune stage
    resumed = subprocess.run(_command(recipe, out, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    for path, content in finished.items():
        assert path.read_bytes() == content, f"{path} changed on resume"
    a, b = straight_weights, _final_weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (out / ".lock").exists()

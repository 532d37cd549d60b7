"""The CUDA paths: mixed-precision fine-tuning and torch latency on a GPU. Skipped without
one (CI has none); run with `python -m pytest -m cuda` on a GPU machine."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli

from compress.checkpoint import load_checkpoint

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(),
                                                   reason="no CUDA GPU on this machine")]


def test_finetune_on_cuda_uses_mixed_precision_and_learns(tmp_path, tiny_checkpoint, tiny_data,
                                                          monkeypatch):
    autocast_dtypes = []
    original = torch.autocast.__init__

    def spy(self, device_type, dtype=None, enabled=True, **kwargs):
        if enabled:
            autocast_dtypes.append((device_type, dtype))
        original(self, device_type, dtype=dtype, enabled=enabled, **kwargs)

    monkeypatch.setattr(torch.autocast, "__init__", spy)
    code, output = run_cli(["finetune", tiny_checkpoint, "--data", tiny_data, "--epochs", 4,
                            "--lr", 0.05, "--batch-size", 8, "--device", "cuda",
                            "--out", tmp_path / "ft"])
    assert code == 0, output
    assert ("cuda", torch.float16) in autocast_dtypes
    history = json.loads((tmp_path / "ft/train/history.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    tuned = load_checkpoint(tmp_path / "ft/finetuned.safetensors")
    assert next(tuned.model.parameters()).device.type == "cpu"  # saved and loaded on CPU


def test_bench_times_a_checkpoint_on_the_gpu(tiny_checkpoint):
    code, output = run_cli(["bench", tiny_checkpoint, "--provider", "cuda", "--batch", "1,8",
                            "--runs", 20, "--warmup", 5, "--json", "--no-peak"])
    assert code == 0, output
    rows = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert [r["batch"] for r in rows] == [1, 8]
    assert all("cuda" in r["provider"] and r["p50_ms"] > 0 for r in rows)

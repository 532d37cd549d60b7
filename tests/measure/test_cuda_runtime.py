"""The torch CUDA runner on a GPU: CUDA-graph replays against eager float32, bench's launch
floor, a recipe's stages timed on the GPU, and predict on the GPU against the CPU. Skipped
without a GPU (CI has none); run with `python -m pytest -m cuda` on a GPU machine
(benchmarks/gpu_path.py runs them first)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, run_cli
from PIL import Image

from compress.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from compress.measure.latency import random_batch
from compress.measure.torch_runner import TorchRunner

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(),
                                                   reason="no CUDA GPU on this machine")]

BASELINE = REPO / "checkpoints" / "mnv3_trashnet.safetensors"


def _folder_of_the_baselines_classes(root, per_class: int):
    """Random images in a folder per class of the shipped baseline: what its 6 outputs need
    (the images themselves are noise with a colour cast per class)."""
    rng = np.random.default_rng(0)
    for index, name in enumerate(load_checkpoint(BASELINE).classes):
        folder = root / "val" / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (72, 96, 3), dtype=np.uint8)
            pixels[..., index % 3] //= 2
            Image.fromarray(pixels).save(folder / f"{i}.jpg")
        (root / "train" / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (72, 96, 3), dtype=np.uint8)).save(
                root / "train" / name / f"{i}.jpg")
    return root


def test_cuda_graph_replays_equal_eager_float32_within_fp16_tolerance():
    model = load_checkpoint(BASELINE).model
    eager = TorchRunner.open(copy.deepcopy(model), "cuda", precision="fp32",
                             channels_last=False, graphs=False)
    deployed = TorchRunner.open(copy.deepcopy(model), "cuda")
    assert deployed.provider == "torch-cuda-fp16-channels-last-graphs"
    for batch in (1, 8, 1):  # one graph per shape; the batch-1 graph replayed again
        images = random_batch(batch, 128, seed=batch)
        prepared = deployed.prepare(images)
        assert prepared.is_pinned() and prepared.dtype == torch.float16
        expected = eager(eager.prepare(images))
        logits = deployed(prepared).float()
        assert logits.device.type == "cpu" and logits.shape == expected.shape
        assert (logits - expected).abs().max() / expected.abs().max() < 2e-2
        assert torch.equal(logits.argmax(1), expected.argmax(1))
    assert set(deployed._captured) == {(1, 3, 128, 128), (8, 3, 128, 128)}


def test_bench_on_the_gpu_reports_the_launch_floor():
    code, output = run_cli(["bench", BASELINE, "--device", "cuda", "--batch", "1,8",
                            "--runs", 50, "--warmup", 5, "--json"])
    assert code == 0, output
    rows = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert [r["batch"] for r in rows] == [1, 8]
    for row in rows:
        assert row["provider"] == "torch-cuda-fp16-channels-last-graphs"
        assert 0 < row["launch_floor_ms"] < row["p50_ms"] and row["peak_kind"] == "fp16"


def test_a_recipe_on_cuda_times_every_stage_on_the_gpu(tmp_path):
    data = _folder_of_the_baselines_classes(tmp_path / "data", per_class=4)
    baseline = load_checkpoint(BASELINE)  # without the TrashNet images it held out
    checkpoint = save_checkpoint(tmp_path / "baseline.safetensors", Checkpoint(
        baseline.model, baseline.model_spec, baseline.classes, baseline.input_size))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "checkpoint": str(checkpoint), "device": "cuda",
        "data": {"root": str(data), "split": "val", "batch_size": 8, "num_workers": 0},
        "bench": {"batch_sizes": [1, 8], "warmup": 3, "runs": 20},
        "stages": [{"export": {"fp16": True}}]}))
    code, output = run_cli(["run", recipe, "--out", tmp_path / "run"])
    assert code == 0, output
    stages = json.loads((tmp_path / "run/report.json").read_text())["stages"]
    providers = {s["provider"] for s in stages}
    assert providers in ({"CUDAExecutionProvider"}, {"torch-cuda-fp16-channels-last-graphs"})
    if providers == {"torch-cuda-fp16-channels-last-graphs"}:
        assert "stages timed in torch on cuda" in output
        assert all(s["deployed_top1_agreement"] >= 0.95 for s in stages)
    assert stages[1]["result"]["checks"]["fp16"]["top1_agreement"] >= 0.95


def test_predict_on_the_gpu_agrees_with_the_cpu(tmp_path):
    images = _folder_of_the_baselines_classes(tmp_path / "data", per_class=25) / "val"
    predicted = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.csv"
        code, output = run_cli(["predict", BASELINE, "--images", images, "--out", out,
                                "--device", device, "--batch", 8, "--workers", 2])
        assert code == 0, output
        predicted[device] = out.read_text().splitlines()[1:]
    assert len(predicted["cuda"]) == 150
    agreeing = sum(a == b for a, b in zip(predicted["cpu"], predicted["cuda"]))
    assert agreeing >= 0.99 * 150

"""Checkpoints: round trip, edited (resized / replaced) layers, and no unpickling ever."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file
from torch import nn

from compress.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from compress.cli import main
from compress.models import build_model


def _round_trip(tmp_path, checkpoint: Checkpoint) -> Checkpoint:
    path = save_checkpoint(tmp_path / "model.safetensors", checkpoint)
    return load_checkpoint(path)


@pytest.mark.parametrize("spec", [
    {"kind": "torchvision", "name": "mobilenet_v3_small", "num_classes": 3,
     "kwargs": {"width_mult": 0.5}},
    "tiny",
])
def test_round_trip_gives_identical_outputs(tmp_path, spec, tiny_model_spec):
    spec = tiny_model_spec if spec == "tiny" else spec
    model = build_model(spec).eval()
    loaded = _round_trip(tmp_path, Checkpoint(model, spec, ["a", "b", "c"], 64, {"k": 1}))
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(model(x), loaded.model(x))
    assert loaded.classes == ["a", "b", "c"] and loaded.input_size == 64
    assert loaded.info == {"k": 1}


def test_resized_and_replaced_layers_are_rebuilt_from_data(tmp_path, tiny_model_spec):
    model = build_model(tiny_model_spec).eval()
    # What pruning does: the last conv keeps 32 of its 64 channels, the classifier reads 32.
    head, classifier = model.model[4], model.model[7].linear
    keep = torch.arange(0, 64, 2)
    head.conv = nn.Conv2d(24, 32, 1, bias=False)
    head.bn = nn.BatchNorm2d(32).eval()
    model.model[7].linear = nn.Linear(32, 3)
    model.model[7].linear.weight.data = classifier.weight.data[:, keep].clone()
    # What decomposition does: a conv replaced by a chain of factor convs.
    model.model[3][0].conv[0] = nn.Sequential(nn.Conv2d(24, 8, 1, bias=False),
                                              nn.Conv2d(8, 72, 1, bias=False))
    loaded = _round_trip(tmp_path, Checkpoint(model, tiny_model_spec, ["a", "b", "c"], 48))
    x = torch.randn(2, 3, 48, 48)
    assert torch.equal(model(x), loaded.model(x))
    assert loaded.model.model[4].conv.out_channels == 32
    assert isinstance(loaded.model.model[3][0].conv[0], nn.Sequential)


class _RunsCodeOnLoad:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("command", ["inspect", "eval"])
def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path, tiny_data, command):
    marker = tmp_path / "pwned"
    evil = tmp_path / "best.pt"
    torch.save({"model.0.conv.weight": _RunsCodeOnLoad(str(marker))}, evil)
    with open(tmp_path / "raw.pkl", "wb") as f:
        pickle.dump(_RunsCodeOnLoad(str(marker)), f)
    for path in (evil, tmp_path / "raw.pkl"):
        args = [command, str(path)] + (["--data", str(tiny_data)] if command == "eval" else [])
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, result.output
        assert "refused" in result.output and len(result.output.strip().splitlines()) == 1
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not marker.exists()


def test_plain_state_dict_points_to_import(tmp_path, tiny_model_spec):
    path = tmp_path / "best.pt"
    torch.save(build_model(tiny_model_spec).state_dict(), path)
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == 2 and "compress import" in result.output


def test_safetensors_without_metadata_is_refused(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == 2 and "without compress metadata" in result.output


def test_save_is_atomic_and_keeps_the_old_file_when_writing_fails(tmp_path, tiny_model_spec,
                                                                    monkeypatch):
    model = build_model(tiny_model_spec)
    path = save_checkpoint(tmp_path / "m.safetensors", Checkpoint(model, tiny_model_spec,
                                                                  ["a", "b", "c"], 48))
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", fail)
    with pytest.raises(OSError):
        save_checkpoint(path, Checkpoint(model, tiny_model_spec, ["a", "b", "c"], 48))
    assert path.read_bytes() == before


def test_a_model_that_would_not_reload_the_same_is_not_written(tmp_path):
    """An edit the checkpoint format does not record (here a stride changed in place) would
    load as another model: save_checkpoint compares outputs and refuses; the old file stays."""
    from compress.errors import StageFailed

    spec = {"kind": "torchvision", "name": "mobilenet_v3_small", "num_classes": 3,
            "kwargs": {"width_mult": 0.5}}
    path = save_checkpoint(tmp_path / "model.safetensors",
                           Checkpoint(build_model(spec).eval(), spec, ["a", "b", "c"], 64))
    before = path.read_bytes()
    model = build_model(spec).eval()
    model.features[0][0].stride = (1, 1)  # the stem's; not a shape: no edit records it
    with pytest.raises(StageFailed, match="computes other outputs"):
        save_checkpoint(path, Checkpoint(model, spec, ["a", "b", "c"], 64))
    assert path.read_bytes() == before


def test_a_pruned_convnext_keeps_its_layer_norms_and_layer_scales(tmp_path):
    """Pruning resizes LayerNorm2d, per-pixel Linears and the blocks' own layer_scale
    parameters: none of them is a layer type the edits list by name."""
    from conftest import apply_stage, stage_context

    from compress.stages import create_stage

    spec = {"kind": "torchvision", "name": "convnext_tiny", "num_classes": 3, "kwargs": {}}
    ctx = stage_context(32, ["a", "b", "c"], torch.device("cpu"), tmp_path, spec)
    model, _ = apply_stage(create_stage("prune", {"ratio": 0.5}), build_model(spec).eval(), ctx)
    assert model.features[1][0].layer_scale.shape[0] < 96
    loaded = _round_trip(tmp_path, Checkpoint(model, spec, ["a", "b", "c"], 32)).model
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model.eval()(x), loaded(x))
    assert loaded.features[0][1].normalized_shape == model.features[0][1].normalized_shape

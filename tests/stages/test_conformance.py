"""Every registered stage keeps the contract: its config round-trips through YAML, it
applies to a tiny model, and what it returns saves, reloads and exports."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import yaml
from conftest import TINY_CLASSES, stage_context

from compress.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from compress.data.config import DataConfig
from compress.data.training_data import TrainingData, train_val_datasets
from compress.models import build_model
from compress.ops.onnx_export import export_onnx
from compress.stages import list_stages, stage_class
from compress.stages.base import StageMeasurer, StageOutput, StageResult

SIZE = 32

# Small, quick options per stage kind; a new stage adds its own (the test below insists).
EXAMPLES = {
    "prune": {"ratio": 0.3},
    "finetune": {"epochs": 1, "lr": 0.01},
    "drop": {"squeeze_excite": "all"},
    "decompose": {"ranks": "ratio", "ratio": 0.5, "min_layer_macs": 0,
                  "min_macs_reduction": 0.0},
    "resize": {"input_size": 24},
    "export": {"fp16": True, "check_images": 4},
    "quantize": {"keep": "int8", "min_agreement": 0.0, "calibration_images": 8,
                 "timing_runs": 10},
    # A budget the input meets: deterministic on a model whose time is mostly overhead. The
    # cutting path is tested on a larger model in tests/stages/test_plan.py.
    "plan": {"target_latency_ms": 1000.0, "timing_runs": 10},
}


def _declared(protocol: type) -> set[str]:
    """The attributes and methods a protocol and the protocols it extends declare."""
    return {name for klass in protocol.__mro__ if getattr(klass, "_is_protocol", False)
            and klass.__module__.startswith("compress.")
            for name in {*vars(klass), *getattr(klass, "__annotations__", {})}
            if not name.startswith("_")}


class OnlyTheStageProtocol:
    """The pipeline's measurer as a stage may see it: reading anything StageMeasurer does
    not declare fails, so the protocol stays the whole of what stages ask."""

    declared = _declared(StageMeasurer)

    def __init__(self, measurer: Any):
        self._measurer = measurer

    def __getattr__(self, name: str) -> Any:
        if name not in self.declared:
            raise AttributeError(f"a stage read measurer.{name}, which StageMeasurer does "
                                 "not declare")
        return getattr(self._measurer, name)


def test_the_stage_protocol_declares_what_the_measurer_offers():
    from compress.pipeline.measurer import Measurer

    assert {"time_in_turn", "compare_files", "runner", "onnx_runtime", "provider",
            "top1", "macro_f1", "model_macro_f1", "device_fingerprint"} <= \
        OnlyTheStageProtocol.declared
    assert all(hasattr(Measurer, name) or name in Measurer.__dataclass_fields__
               for name in OnlyTheStageProtocol.declared)


def test_every_registered_stage_has_an_example():
    assert set(list_stages()) == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_config_round_trips_through_yaml(name):
    config = stage_class(name).Config(**EXAMPLES[name])
    dumped = yaml.safe_dump(config.model_dump(mode="json"))
    assert stage_class(name).Config(**yaml.safe_load(dumped)) == config


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_stage_applies_and_its_model_saves_reloads_and_exports(name, tmp_path, tiny_data,
                                                                   tiny_model_spec):
    train, val, classes = train_val_datasets(DataConfig(data_path=str(tiny_data),
                                                        img_size=SIZE, num_workers=0))
    data = TrainingData(train, val, classes, batch_size=8, num_workers=0)
    torch.manual_seed(0)
    model = build_model(tiny_model_spec).eval()
    ctx = stage_context(SIZE, TINY_CLASSES, torch.device("cpu"), tmp_path, tiny_model_spec,
                        data=data, teacher=build_model(tiny_model_spec).eval())
    ctx.measurer = OnlyTheStageProtocol(ctx.measurer)
    stage = stage_class(name)(stage_class(name).Config(**EXAMPLES[name]))
    output = stage.apply(model, ctx)
    assert isinstance(output, StageOutput) and isinstance(output.result, StageResult)
    yaml.safe_dump(output.result.to_dict())  # the record stores it as plain data
    size = output.input_size or SIZE
    path = save_checkpoint(tmp_path / "model.safetensors", Checkpoint(
        output.model, tiny_model_spec, TINY_CLASSES, size))
    reloaded = load_checkpoint(path).model.eval()
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(reloaded(images), output.model.eval()(images), atol=1e-5)
    assert export_onnx(reloaded, tmp_path / "reloaded.onnx", size).is_file()
    if output.onnx is not None:
        assert output.onnx.is_file()

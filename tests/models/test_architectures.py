"""Any model a user brings: for each architecture (torchvision families, timm models when
the timm extra is installed), random weights at a small input size go through what a user
does: build by name, import from their own state_dict, prune, decompose, save, reload (same
outputs), export to ONNX (parity with torch), and measure (torch and ONNX count the same
MACs). An architecture that cannot do a step must say why in one line; the suite asserts
that line.

The fast list runs in every test command; the slow list with the whole suite; the zoo list
(20-60 s each on 2 cores, mostly torch-pruning and Tucker on wide layers of random weights)
only when asked for: python -m pytest -m zoo tests/models, as .ci/run does after the suite.
The suite keeps a narrower member of their families (convnext_atto for ConvNeXt, regnets
and MobileNets for residual blocks with projections, squeezenet1_1 for concatenation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import apply_stage, stage_context

from compress.checkpoint import Checkpoint, import_weights, load_checkpoint, save_checkpoint
from compress.measure.macs import count_macs
from compress.measure.onnx_macs import onnx_macs
from compress.models import build_model, model_spec_from_arg
from compress.models.timm_models import timm_available
from compress.ops.onnx_export import export_onnx
from compress.stages import create_stage

CLASSES = ["a", "b", "c"]

# What a step says when the architecture cannot do all of it (asserted, not tolerated).
PRUNE_NOTES = {"shufflenet_v2_x0_5": "torch-pruning cannot trace",
               "shufflenet_v2_x1_0": "torch-pruning cannot trace",
               # timm's MixedConv2d splits channels by a fixed list: left whole
               "mixnet_s": "pruning breaks MixedConv2d (34)"}

FAST = [("mobilenet_v3_small", 32), ("shufflenet_v2_x0_5", 32), ("efficientnet_b0", 32)]
FAST_TIMM = [("timm/efficientnet_lite0", 32), ("timm/convnext_atto", 32)]
SLOW = [("mobilenet_v2", 64), ("mobilenet_v3_large", 64), ("shufflenet_v2_x1_0", 64),
        ("squeezenet1_1", 64), ("regnet_y_400mf", 64), ("mnasnet1_0", 64)]
SLOW_TIMM = [("timm/mobilenetv3_large_100", 64), ("timm/regnetx_002", 64),
             ("timm/mixnet_s", 64)]  # the prune stage leaving a layer type whole
# Decomposing every layer of the wide ones takes 10 s and more (Tucker of 512-channel convs),
# and reaching a MACs target prunes DenseNet-121 about seven times at 16 s each.
ZOO = [("resnet18", 32), ("convnext_tiny", 32), ("resnet50", 64), ("densenet121", 64)]
ZOO_TIMM = [("timm/resnet18", 64), ("timm/ghostnet_100", 64)]

needs_timm = pytest.mark.skipif(not timm_available(),
                                reason="timm is not installed (pip install -e '.[timm]')")
CASES = ([pytest.param(*case, id=case[0]) for case in FAST]
         + [pytest.param(*case, id=case[0], marks=needs_timm) for case in FAST_TIMM]
         + [pytest.param(*case, id=case[0], marks=pytest.mark.slow) for case in SLOW]
         + [pytest.param(*case, id=case[0], marks=[pytest.mark.slow, needs_timm])
            for case in SLOW_TIMM]
         + [pytest.param(*case, id=case[0], marks=[pytest.mark.slow, pytest.mark.zoo])
            for case in ZOO]
         + [pytest.param(*case, id=case[0], marks=[pytest.mark.slow, pytest.mark.zoo,
                                                   needs_timm]) for case in ZOO_TIMM])


def _outputs(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(images)


@pytest.mark.parametrize("name, size", CASES)
def test_an_architecture_goes_through_every_step(name, size, tmp_path):
    torch.manual_seed(0)
    images = torch.randn(2, 3, size, size)
    spec = model_spec_from_arg(name, len(CLASSES))
    original = build_model(spec).eval()

    # The user's own weights, as a DDP training script saves them.
    weights = tmp_path / "best.pt"
    torch.save({"epoch": 9, "model": {f"module.{k}": v for k, v in
                                      original.state_dict().items()}}, weights)
    imported, note = import_weights(name, weights, CLASSES, size)
    assert note == ""
    assert torch.equal(_outputs(imported.model, images), _outputs(original, images))

    ctx = stage_context(size, CLASSES, torch.device("cpu"), tmp_path, spec)
    model, pruned = apply_stage(create_stage("prune", {"target_macs": 0.7}),
                                imported.model, ctx)
    if name.removeprefix("timm/") in PRUNE_NOTES:
        assert PRUNE_NOTES[name.removeprefix("timm/")] in pruned["note"], pruned
        assert pruned["macs_kept"] < 1.0, "the traceable blocks must still be pruned"
    else:
        assert pruned["note"] == "" and 0.6 < pruned["macs_kept"] <= 0.71, pruned
    model, decomposed = apply_stage(create_stage("decompose", {
        "ranks": "ratio", "ratio": 0.5, "min_layer_macs": 0, "min_macs_reduction": 0.0}),
        model, ctx)

    path = save_checkpoint(tmp_path / "model.safetensors",
                           Checkpoint(model, spec, CLASSES, size))
    reloaded = load_checkpoint(path).model
    assert torch.equal(_outputs(reloaded, images), _outputs(model, images))

    onnx_path = export_onnx(reloaded, tmp_path / "model.onnx", size)
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    np.testing.assert_allclose(got, _outputs(reloaded, images).numpy(), rtol=1e-3, atol=1e-4)
    assert onnx_macs(onnx_path, size) == count_macs(reloaded, size)
    if not decomposed["decomposed"]:
        pytest.fail(f"nothing decomposed: {decomposed['skipped']}")


def test_an_imagenet_head_is_replaced_with_a_note(tmp_path):
    full = build_model(model_spec_from_arg("resnet18", 1000))
    weights = tmp_path / "imagenet.pt"
    torch.save({"state_dict": full.state_dict()}, weights)
    checkpoint, note = import_weights("resnet18", weights, CLASSES, 32)
    assert "fc in the file has 1000 outputs for 3 classes" in note
    assert checkpoint.model.fc.out_features == 3
    trunk = {k: v for k, v in full.state_dict().items() if not k.startswith("fc.")}
    for key, value in trunk.items():
        assert torch.equal(checkpoint.model.state_dict()[key], value), key


@needs_timm
def test_timm_weights_in_their_own_safetensors_format(tmp_path):
    from safetensors.torch import save_file

    model = build_model(model_spec_from_arg("timm/mobilenetv3_small_050", 3)).eval()
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    checkpoint, _ = import_weights("timm/mobilenetv3_small_050",
                                   tmp_path / "model.safetensors", CLASSES, 32)
    images = torch.randn(1, 3, 32, 32)
    assert torch.equal(_outputs(checkpoint.model, images), _outputs(model, images))


@pytest.mark.parametrize("name", ["resnet18", "convnext_tiny", "timm/resnet18"])
def test_a_width_option_only_where_the_family_has_one(name):
    from compress.errors import UserError

    if name.startswith("timm/") and not timm_available():
        pytest.skip("timm is not installed")
    with pytest.raises(UserError, match="fixed width, so --width-mult cannot apply"):
        model_spec_from_arg(name, 3, width_mult=0.5)
    assert model_spec_from_arg("mobilenet_v2", 3, width_mult=0.5)["kwargs"] == \
        {"width_mult": 0.5}

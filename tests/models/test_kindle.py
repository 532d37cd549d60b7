"""The Kindle-style YAML builder: every module type, multipliers, the teams' configs."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml
from conftest import EVERY_MODULE, REPO, TINY_MNV3
from torch import nn

from compress.checkpoint import load_weights
from compress.errors import UserError
from compress.measure.macs import count_params
from compress.models import build_model
from compress.models.kindle import KindleModel, build_kindle_model, load_kindle_yaml
from compress.models.kindle_blocks import make_divisible

SHARED_FORMATS = REPO.parent / "shared" / "formats" / "boostcamp"

def test_every_module_type_builds_and_runs():
    model = build_kindle_model(EVERY_MODULE)
    rows = model.model
    assert [type(m).__name__ for m in rows][:5] == [
        "Conv", "Sequential", "Sequential", "Sequential", "Sequential"]
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)
    # Repeated conv: stride only on the last repeat (64 -> 32 -> 32 -> 16).
    assert rows[1][0].conv.stride == (1, 1) and rows[1][1].conv.stride == (2, 2)
    assert rows[1][0].conv.groups == 16  # depthwise: gcd(in, out)
    # Bottleneck repeat: first keeps the input width, the last maps to the output width.
    assert rows[2][0].conv2.conv.out_channels == 16 and rows[2][1].conv2.conv.out_channels == 24
    assert rows[4][0].conv[5].__class__.__name__ == "SqueezeExcitation"


def test_depth_and_width_multiples():
    config = copy.deepcopy(EVERY_MODULE)
    config["depth_multiple"], config["width_multiple"] = 2.0, 0.5
    model = build_kindle_model(config)
    assert len(model.model[1]) == 4  # repeat 2 x depth 2
    assert model.model[0].conv.out_channels == make_divisible(16 * 0.5)
    assert model.model[4][0].conv[-2].out_channels == make_divisible(40 * 0.5)
    assert model.model[-1].linear.out_features == 5  # the classifier keeps its width
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_make_divisible_rounds_to_eight_without_losing_ten_percent():
    assert [make_divisible(v) for v in (16, 20, 36, 52, 4)] == [16, 24, 40, 56, 8]


def test_reference_mobilenetv3_has_about_4_2_million_parameters():
    model = build_kindle_model(load_kindle_yaml(REPO / "recipes/models/mobilenetv3.yaml")).eval()
    assert abs(count_params(model) - 4.2e6) / 4.2e6 < 0.01
    assert model(torch.randn(1, 3, 128, 128)).shape == (1, 6)


@pytest.mark.parametrize("name, params", [
    ("mobilenetv3.yaml", 4_210_998), ("mobilenetv3_cut.yaml", 452_454), ("example.yaml", 16_817)])
def test_team_configs_match_the_original_parameter_counts(name, params):
    path = SHARED_FORMATS / name
    if not path.is_file():
        pytest.skip(f"{path} not found: the competition configs live in ../shared/formats")
    assert count_params(build_kindle_model(load_kindle_yaml(path))) == params


@pytest.mark.parametrize("spelling", ["as saved", "without .0", "without model."])
def test_state_dict_of_a_model_built_from_the_same_yaml_loads(spelling):
    trained, fresh = build_kindle_model(TINY_MNV3), build_kindle_model(TINY_MNV3)
    state = trained.state_dict()
    if spelling == "without .0":  # how some teams' code names one-block rows
        state = {k.replace("model.1.0.", "model.1.").replace("model.2.0.", "model.2."): v
                 for k, v in state.items()}
    elif spelling == "without model.":
        state = {k.removeprefix("model."): v for k, v in state.items()}
    load_weights(fresh, state, source="test")
    x = torch.randn(2, 3, 48, 48)
    trained.eval(), fresh.eval()
    assert torch.equal(trained(x), fresh(x))


def test_weights_of_another_architecture_are_refused_with_the_reason():
    other = copy.deepcopy(TINY_MNV3)
    other["backbone"][4] = [1, "Conv", [32, 1, 1]]
    with pytest.raises(UserError, match="wrong shape"):
        load_weights(build_kindle_model(TINY_MNV3), build_kindle_model(other).state_dict(), "x")


def test_unknown_module_name_is_a_user_error(tmp_path):
    config = copy.deepcopy(TINY_MNV3)
    config["backbone"][1][1] = "InvertedResidualv9"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(UserError, match=r"backbone.1: unknown module 'InvertedResidualv9'"):
        load_kindle_yaml(path)


def test_torchvision_models_by_name_with_width_and_classes():
    small = build_model({"kind": "torchvision", "name": "mobilenet_v3_small", "num_classes": 6,
                         "kwargs": {"width_mult": 0.5}})
    large = build_model({"kind": "torchvision", "name": "mobilenet_v3_large", "num_classes": 4})
    assert small(torch.randn(1, 3, 64, 64)).shape == (1, 6)
    assert large(torch.randn(1, 3, 64, 64)).shape == (1, 4)
    full = build_model({"kind": "torchvision", "name": "mobilenet_v3_small", "num_classes": 6})
    assert count_params(small) < count_params(full)
    assert isinstance(build_kindle_model(TINY_MNV3), KindleModel)
    assert isinstance(small.classifier[-1], nn.Linear)

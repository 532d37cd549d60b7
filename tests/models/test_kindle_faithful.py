"""Kindle YAMLs build exactly as the competition's original code built them.

`Reference*` below re-implements the original `code/src` (boostcampaitech2
model-optimization-level3-cv-04, first commit: `modules/*.py`, `model.py`,
`utils/torch_utils.py`) closely, quirks included. A state_dict of the reference, loaded the
way users load their `best.pt`, must make the compress model compute the same outputs.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import EVERY_MODULE, REPO
from torch import nn
from torch.nn import functional as F

from compress.checkpoint import load_weights
from compress.models.kindle import build_kindle_model, load_kindle_yaml

SHARED_FORMATS = REPO.parent / "shared" / "formats" / "boostcamp"

# ---------------------------------------------------------------- the original, re-implemented


def ref_make_divisible(v, divisor=8, min_value=None):  # utils/torch_utils.py:136
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def ref_autopad(kernel_size, padding=None):  # utils/torch_utils.py:152
    if isinstance(kernel_size, int):
        kernel_size = [kernel_size]
    return padding or [x // 2 for x in kernel_size]


class RefHardSigmoid(nn.Module):  # modules/activations.py
    def forward(self, x):
        return F.relu6(x + 3.0) / 6.0


class RefHardSwish(nn.Module):
    def forward(self, x):
        inner = F.relu6(x + 3.0).div_(6.0)
        return x.mul(inner)


class RefSwish(nn.Module):
    def forward(self, x):
        return x.mul(x.sigmoid())


_REF_CUSTOM_ACTIVATIONS = {"HardSigmoid": RefHardSigmoid, "HardSwish": RefHardSwish,
                           "Swish": RefSwish}


def ref_activation(act_type):  # utils/torch_utils.py:163 Activation
    args = [1] if act_type == "Softmax" else []
    if act_type is None:
        return nn.Identity()
    if hasattr(nn, act_type):
        return getattr(nn, act_type)(*args)
    return _REF_CUSTOM_ACTIVATIONS[act_type]()


class RefConv(nn.Module):  # modules/conv.py:16
    def __init__(self, in_channel, out_channels, kernel_size, stride=1, padding=None, groups=1,
                 activation="ReLU"):
        super().__init__()
        self.conv = nn.Conv2d(in_channel, out_channels, kernel_size, stride,
                              padding=ref_autopad(kernel_size, padding), groups=groups,
                              bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = ref_activation(activation)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class RefDWConv(nn.Module):  # modules/dwconv.py:17
    def __init__(self, in_channel, out_channels, kernel_size, stride=1, padding=None,
                 activation="ReLU"):
        super().__init__()
        self.conv = nn.Conv2d(in_channel, out_channels, kernel_size, stride,
                              padding=ref_autopad(kernel_size, padding),
                              groups=math.gcd(in_channel, out_channels), bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = ref_activation(activation)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class RefBottleneck(nn.Module):  # modules/bottleneck.py:16
    def __init__(self, in_channel, out_channels, shortcut=True, groups=1, expansion=0.5,
                 activation="ReLU"):
        super().__init__()
        expansion_channel = int(out_channels * expansion)
        self.conv1 = RefConv(in_channel, expansion_channel, 1, 1, activation=activation)
        self.conv2 = RefConv(expansion_channel, out_channels, 3, 1, groups=groups)
        self.shortcut = shortcut and in_channel == out_channels

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        if self.shortcut:
            out = out + x
        return out


class RefConvBNReLU(nn.Sequential):  # modules/invertedresidualv2.py:53
    def __init__(self, in_planes, out_planes, kernel_size=3, stride=1, groups=1):
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_planes, out_planes, kernel_size, stride, padding, groups=groups,
                      bias=False),
            nn.BatchNorm2d(out_planes),
            nn.ReLU6(inplace=True),
        )


class RefInvertedResidualv2(nn.Module):  # modules/invertedresidualv2.py:6
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        assert stride in [1, 2], stride
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(RefConvBNReLU(inp, hidden_dim, kernel_size=1))
        layers.extend([
            RefConvBNReLU(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ])
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class RefSqueezeExcitation(nn.Module):  # modules/invertedresidualv3.py:82
    def __init__(self, input_channels, squeeze_factor=4):
        super().__init__()
        squeeze_channels = ref_make_divisible(input_channels // squeeze_factor, 8)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.hardsigmoid = RefHardSigmoid()

    def forward(self, x):
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = self.hardsigmoid(self.fc2(self.relu(self.fc1(scale))))
        return scale * x


class RefInvertedResidualv3(nn.Module):  # modules/invertedresidualv3.py:17
    def __init__(self, inp, hidden_dim, oup, kernel_size, stride, use_se, use_hs):
        super().__init__()
        assert stride in [1, 2]
        self.identity = stride == 1 and inp == oup
        pad = (kernel_size - 1) // 2
        if inp == hidden_dim:
            self.conv = nn.Sequential(
                nn.Conv2d(hidden_dim, hidden_dim, kernel_size, stride, pad, groups=hidden_dim,
                          bias=False),
                nn.BatchNorm2d(hidden_dim),
                RefHardSwish() if use_hs else nn.ReLU(inplace=True),
                RefSqueezeExcitation(hidden_dim) if use_se else nn.Identity(),
                nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
                nn.BatchNorm2d(oup),
            )
        else:
            self.conv = nn.Sequential(
                nn.Conv2d(inp, hidden_dim, 1, 1, 0, bias=False),
                nn.BatchNorm2d(hidden_dim),
                RefHardSwish() if use_hs else nn.ReLU(inplace=True),
                nn.Conv2d(hidden_dim, hidden_dim, kernel_size, stride, pad, groups=hidden_dim,
                          bias=False),
                nn.BatchNorm2d(hidden_dim),
                RefSqueezeExcitation(hidden_dim) if use_se else nn.Identity(),
                RefHardSwish() if use_hs else nn.ReLU(inplace=True),
                nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
                nn.BatchNorm2d(oup),
            )

    def forward(self, x):
        return x + self.conv(x) if self.identity else self.conv(x)


class RefLinear(nn.Module):  # modules/linear.py:15
    def __init__(self, in_channel, out_channel, activation):
        super().__init__()
        self.linear = nn.Linear(in_channel, out_channel)
        self.activation = ref_activation(activation)

    def forward(self, x):
        return self.activation(self.linear(x))


# Generators: modules/base_generator.py, conv.py, dwconv.py, bottleneck.py, linear.py,
# flatten.py, poolings.py, invertedresidualv2.py, invertedresidualv3.py. `args` here is the
# generator's `self.args` (the YAML args), `in_channel` its input width.

def _ref_repeated_conv(base, args, out_channel, repeat):  # conv.py:82 (and dwconv.py:81)
    if repeat > 1:
        stride = 1
        # Important!: stride only applies at the end of the repeat.
        if len(args) > 2:
            stride = args[3]
            args[3] = 1
        module = []
        for i in range(repeat):
            if len(args) > 1 and stride > 1 and i == repeat - 1:
                args[3] = stride
            module.append(base(*args))
            args[0] = out_channel
        return nn.Sequential(*module)
    return base(*args)


def ref_generate(name, in_channel, args, width, repeat):
    """(module, out_channel) as `ModuleGenerator(name, in_channel)(*args, width_multiply=...)`
    and then `generator(repeat=repeat)` build them."""
    def divisible(c):
        return ref_make_divisible(c, divisor=8)

    if name in ("Conv", "DWConv", "FixedConv"):
        out = int(args[0]) if name == "FixedConv" else divisible(args[0] * width)
        base = RefDWConv if name == "DWConv" else RefConv
        return _ref_repeated_conv(base, [in_channel, out, *args[1:]], out, repeat), out
    if name == "Bottleneck":
        out = divisible(args[0] * width)
        module = [RefBottleneck(in_channel, in_channel, *args[1:]) for _ in range(repeat - 1)]
        module.append(RefBottleneck(in_channel, out, *args[1:]))
        return nn.Sequential(*module), out
    if name == "InvertedResidualv2":
        _, t, s = args
        inp, oup, module = in_channel, divisible(args[0] * width), []
        for i in range(repeat):
            module.append(RefInvertedResidualv2(inp=inp, oup=oup, expand_ratio=t,
                                                stride=s if i == 0 else 1))
            inp = oup
        return nn.Sequential(*module), oup
    if name == "InvertedResidualv3":
        k, t, _, se, hs, s = args
        inp, oup, module = in_channel, divisible(args[2] * width), []
        for i in range(repeat):
            module.append(RefInvertedResidualv3(inp=inp, hidden_dim=divisible(inp * t), oup=oup,
                                                kernel_size=k, stride=s if i == 0 else 1,
                                                use_se=se, use_hs=hs))
            inp = oup
        return nn.Sequential(*module), oup
    if name == "Linear":  # "TODO: Apply repeat": the repeat is ignored
        act = args[1] if len(args) > 1 else None
        return RefLinear(in_channel, args[0], activation=act), args[0]
    if name == "Flatten":
        return nn.Flatten(), in_channel
    if name in ("MaxPool", "AvgPool"):
        base = getattr(nn, f"{name}2d")
        if repeat > 1:
            return nn.Sequential(*[base(*args) for _ in range(repeat)]), in_channel
        return base(*args), in_channel
    if name == "GlobalAvgPool":
        return nn.AdaptiveAvgPool2d(args[0] if len(args) > 0 else 1), in_channel
    raise AttributeError(f"module 'src.modules' has no attribute '{name}Generator'")


class ReferenceModel(nn.Module):  # model.py: Model + ModelParser._parse_model
    def __init__(self, cfg):
        super().__init__()
        layers, in_channel = [], cfg["input_channel"]
        for repeat, module, args in cfg["backbone"]:
            repeat = max(round(repeat * cfg["depth_multiple"]), 1) if repeat > 1 else repeat
            m, in_channel = ref_generate(module, in_channel, list(args), cfg["width_multiple"],
                                         repeat)
            layers.append(m)
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


# ---------------------------------------------------------------- configs and the comparison


QUIRKS = {  # explicit padding 0, repeats with stride, DWConv groups, odd kernels and lists
    "input_channel": 3, "depth_multiple": 1.0, "width_multiple": 1.0,
    "backbone": [
        [1, "Conv", [6, 5, 1, 0]],                        # padding 0 means 'same' there
        [3, "Conv", [16, 3, 2, 0, 1, "Swish"]],           # stride on the last repeat only
        [2, "DWConv", [24, 3, 2, 0, "HardSwish"]],        # 16 -> 24: groups gcd = 8
        [1, "DWConv", [24, [3, 5], 1]],                   # list kernel: autopad per side
        [1, "Conv", [24, 3, 1, 1, 8, "HardSigmoid"]],     # groups, explicit padding 1
        [0, "Conv", [32, 1]],                             # repeat 0 builds one block
        [1, "FixedConv", [20, 3, 1, None, 1, "ReLU6"]],   # no width rounding
        [2, "Bottleneck", [20, True, 2, 0.5, "SiLU"]],
        [3, "InvertedResidualv2", [24, 6, 2]],            # stride on the first repeat
        [1, "InvertedResidualv2", [24, 1, 1]],            # expand 1: no pw conv
        [2, "InvertedResidualv3", [3, 1, 24, 1, 1, 1]],   # inp == hidden branch, SE, HS
        [2, "InvertedResidualv3", [5, 2.3, 40, 1, 0, 2]],
        [2, "MaxPool", [3, 1, 1]],
        [1, "AvgPool", [2, 1, 1]],                        # pools: padding as written
        [1, "GlobalAvgPool", [2]],                        # output size 2
        [1, "Conv", [32, 2, 1, 0, 1, None]],              # even kernel, padding 0 -> 1
        [1, "GlobalAvgPool", [1]],
        [1, "Flatten", []],
        [3, "Linear", [32, "ReLU"]],                      # the repeat is ignored
        [1, "Linear", [5, "Softmax"]],
    ],
}

SCALED = copy.deepcopy(QUIRKS)  # multiples that need rounding
SCALED.update({"depth_multiple": 0.5, "width_multiple": 0.7})
SCALED["backbone"][1][0] = 5  # round(2.5) == 2 in Python: banker's rounding

DEEPER = copy.deepcopy(EVERY_MODULE)
DEEPER.update({"depth_multiple": 1.67, "width_multiple": 1.3})

EXAMPLE = {  # the baseline's example.yaml, inline so that it runs without ../shared
    "input_channel": 3, "depth_multiple": 1.0, "width_multiple": 1.0,
    "backbone": [
        [1, "Conv", [6, 5, 1, 0]], [1, "MaxPool", [2]], [1, "Conv", [16, 5, 1, 0]],
        [1, "MaxPool", [2]], [1, "GlobalAvgPool", []], [1, "Flatten", []],
        [1, "Linear", [120, "ReLU"]], [1, "Linear", [84, "ReLU"]], [1, "Linear", [9]],
    ],
}


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny tensors: threads only add overhead, a lot of it on a busy 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _assert_same_outputs(config: dict) -> None:
    torch.manual_seed(0)
    reference = ReferenceModel(copy.deepcopy(config))
    with torch.no_grad():  # trained-looking BN statistics, so that BN mapping matters
        for name, tensor in reference.state_dict().items():
            if name.endswith(("running_var", "bn.weight")):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith(("running_mean", "bias")):
                tensor.uniform_(-0.5, 0.5)
    model = build_kindle_model(copy.deepcopy(config))
    state = reference.state_dict()
    # Same names as the original (no key mapping needed), then loaded as users load best.pt.
    assert list(model.state_dict()) == list(state)
    load_weights(model, state, source="ref")
    reference.eval(), model.eval()
    x = torch.randn(2, config["input_channel"], 32, 32)
    with torch.no_grad():
        expected, got = reference(x), model(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-6), (got - expected).abs().max()


@pytest.mark.parametrize("config", [QUIRKS, SCALED, DEEPER, EXAMPLE, EVERY_MODULE],
                         ids=["quirks", "scaled", "deeper", "example", "every-module"])
def test_builds_and_computes_as_the_original(config):
    _assert_same_outputs(config)


@pytest.mark.parametrize("name", ["example.yaml", "mobilenetv3.yaml", "mobilenetv3_cut.yaml"])
def test_team_configs_compute_as_the_original(name):
    path = SHARED_FORMATS / name
    if not path.is_file():
        pytest.skip(f"{path} not found: the competition configs live in ../shared/formats")
    _assert_same_outputs(load_kindle_yaml(path))


def test_explicit_padding_zero_is_same_padding_as_in_the_original():
    model = build_kindle_model(EXAMPLE)
    assert model.model[0].conv.padding == (2, 2)  # `padding or k // 2` in the original
    assert model.model[1].padding == 0  # pools take their arguments as written

"""The building blocks of the Kindle-style model YAML used by the competition teams.

Attribute names and nesting follow the teams' code exactly, so that their trained
`best.pt` state_dicts load into models built here (`model.0.conv.weight`,
`model.1.0.conv.0.weight`, ...).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor`, never more than 10 % below it."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def autopad(kernel_size: int | list[int], padding: int | list[int] | None) -> int | list[int]:
    """TensorFlow's padding='SAME' for odd kernels when no padding is given."""
    # The teams' autopad is `padding or k // 2`: an explicit 0 also means 'same', so
    # `Conv [6, 5, 1, 0]` pads by 2 there, and their weights were trained that way.
    if padding:
        return padding
    if isinstance(kernel_size, int):
        return kernel_size // 2
    return [k // 2 for k in kernel_size]


# Names the teams' YAML files use for activations that torch spells differently.
_ACTIVATION_ALIASES = {"HardSwish": "Hardswish", "HardSigmoid": "Hardsigmoid", "Swish": "SiLU"}


def activation_type(name: str) -> type[nn.Module] | None:
    """The torch module an activation's YAML name stands for, or None."""
    module_type = getattr(nn, _ACTIVATION_ALIASES.get(name, name), None)
    return module_type if isinstance(module_type, type) and issubclass(module_type, nn.Module) \
        else None


def activation(name: str | None) -> nn.Module:
    """Build an activation from its YAML name; None means no activation."""
    if name is None:
        return nn.Identity()
    module_type = activation_type(name)
    if module_type is None:
        raise ValueError(f"unknown activation {name!r}")
    return module_type(1) if module_type is nn.Softmax else module_type()


class Conv(nn.Module):
    """Conv (no bias) + BatchNorm + activation."""

    def __init__(self, in_channel: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int | None = None, groups: int = 1, act: str | None = "ReLU"):
        super().__init__()
        self.conv = nn.Conv2d(in_channel, out_channels, kernel_size, stride,
                              autopad(kernel_size, padding), groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DWConv(Conv):
    """Grouped conv with groups = gcd(in, out) (depthwise when in == out) + BN + activation."""

    def __init__(self, in_channel: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int | None = None, act: str | None = "ReLU"):
        super().__init__(in_channel, out_channels, kernel_size, stride, padding,
                         math.gcd(in_channel, out_channels), act)


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 Conv to out*expansion, 3x3 Conv to out, residual if shapes allow."""

    def __init__(self, in_channel: int, out_channels: int, shortcut: bool = True, groups: int = 1,
                 expansion: float = 0.5, act: str | None = "ReLU"):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = Conv(in_channel, hidden, 1, 1, act=act)
        self.conv2 = Conv(hidden, out_channels, 3, 1, groups=groups)
        self.shortcut = bool(shortcut) and in_channel == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.shortcut else out


def _conv_bn_relu6(in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
                   groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, stride, (kernel_size - 1) // 2, groups=groups,
                  bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU6(inplace=True),
    )


class InvertedResidualv2(nn.Module):
    """MobileNetV2 block: 1x1 expand (if t != 1), 3x3 depthwise, 1x1 project."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: float):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(inp, hidden, kernel_size=1))
        layers += [
            _conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class SqueezeExcitation(nn.Module):
    """SE gate: global pool, 1x1 squeeze to make_divisible(c // 4), ReLU, 1x1, HardSigmoid."""

    def __init__(self, channels: int, squeeze_factor: int = 4):
        super().__init__()
        squeezed = make_divisible(channels // squeeze_factor, 8)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.hardsigmoid = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = nn.functional.adaptive_avg_pool2d(x, 1)
        scale = self.hardsigmoid(self.fc2(self.relu(self.fc1(scale))))
        return scale * x


class InvertedResidualv3(nn.Module):
    """MobileNetV3 block: [1x1 expand], kxk depthwise, [SE], 1x1 project; HardSwish or ReLU."""

    def __init__(self, inp: int, hidden_dim: int, oup: int, kernel_size: int, stride: int,
                 use_se: bool, use_hs: bool):
        super().__init__()
        self.identity = stride == 1 and inp == oup

        def act() -> nn.Module:
            return nn.Hardswish() if use_hs else nn.ReLU(inplace=True)

        depthwise = [
            nn.Conv2d(hidden_dim, hidden_dim, kernel_size, stride, (kernel_size - 1) // 2,
                      groups=hidden_dim, bias=False),
            nn.BatchNorm2d(hidden_dim),
        ]
        se = SqueezeExcitation(hidden_dim) if use_se else nn.Identity()
        project = [nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        if inp == hidden_dim:
            layers = [*depthwise, act(), se, *project]
        else:
            expand = [nn.Conv2d(inp, hidden_dim, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden_dim),
                      act()]
            layers = [*expand, *depthwise, se, act(), *project]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.identity else self.conv(x)


class Linear(nn.Module):
    """Fully connected layer + optional activation."""

    def __init__(self, in_channel: int, out_channel: int, act: str | None = None):
        super().__init__()
        self.linear = nn.Linear(in_channel, out_channel)
        self.activation = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))

"""Low-rank factorisation of single layers: Tucker-2 of a k x k conv, SVD of a 1x1 conv and
of a Linear layer, and the rank rules. Each factorisation is checked on the layer's output
for random input, and on its MACs."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from compress.measure.macs import count_macs
from compress.ops.decomposition import (
    energy_rank,
    factorisation_kind,
    low_rank_replacement,
    round_rank,
    svd_conv1x1,
    svd_linear,
    tucker2_conv,
    vbmf_rank,
)


def _low_rank_conv(out: int, inp: int, kernel: int, rank_out: int, rank_in: int,
                   **conv) -> nn.Conv2d:
    """A conv whose weight has multilinear rank (rank_out, rank_in) in its channel modes."""
    layer = nn.Conv2d(inp, out, kernel, **conv)
    core = torch.randn(rank_out, rank_in, kernel, kernel)
    u_out, u_in = torch.randn(out, rank_out), torch.randn(inp, rank_in)
    with torch.no_grad():
        layer.weight.copy_(torch.einsum("abkl,oa,ib->oikl", core, u_out, u_in) / inp)
    return layer


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


def _as_model(layer: nn.Module) -> nn.Module:
    return nn.Sequential(layer)


@torch.no_grad()
def test_tucker2_of_a_low_rank_conv_reproduces_its_output_with_fewer_macs():
    conv = _low_rank_conv(48, 32, 3, rank_out=8, rank_in=8, stride=2, padding=1, dilation=1)
    factors, error = tucker2_conv(conv, rank_out=8, rank_in=8)
    first, middle, last = factors
    assert (first.in_channels, first.out_channels, first.kernel_size) == (32, 8, (1, 1))
    assert (middle.in_channels, middle.out_channels, middle.kernel_size) == (8, 8, (3, 3))
    assert (middle.stride, middle.padding) == ((2, 2), (1, 1))  # the original's, on the core
    assert (last.in_channels, last.out_channels) == (8, 48) and last.bias is not None
    assert first.bias is None and middle.bias is None
    x = torch.randn(2, 32, 20, 20)
    assert error < 1e-6
    assert _relative(factors(x), conv(x)) < 1e-4
    assert count_macs(_as_model(factors), 20, 32) < count_macs(_as_model(conv), 20, 32) / 4


@torch.no_grad()
def test_tucker2_of_a_full_rank_conv_at_a_lower_rank_approximates_it():
    conv = nn.Conv2d(16, 16, 3, padding=1, bias=False)
    factors, error = tucker2_conv(conv, 8, 8)
    x = torch.randn(2, 16, 12, 12)
    assert 0.1 < error < 1  # a random weight is not low-rank: an error, bounded
    assert _relative(factors(x), conv(x)) < 1
    full, full_error = tucker2_conv(conv, 16, 16)
    assert full_error < 1e-6 and _relative(full(x), conv(x)) < 1e-4


@torch.no_grad()
def test_svd_of_a_1x1_conv_and_a_linear_layer_reproduces_them_at_their_rank():
    conv = _low_rank_conv(64, 48, 1, rank_out=8, rank_in=8, stride=2)
    factors, error = svd_conv1x1(conv, 8)
    assert [f.kernel_size for f in factors] == [(1, 1), (1, 1)]
    assert factors[0].stride == (2, 2)  # the original stride, on the first factor
    x = torch.randn(2, 48, 16, 16)
    assert error < 1e-6 and _relative(factors(x), conv(x)) < 1e-4
    assert count_macs(_as_model(factors), 16, 48) < count_macs(_as_model(conv), 16, 48) / 2

    linear = nn.Linear(40, 30)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(30, 6) @ torch.randn(6, 40))
    factors, error = svd_linear(linear, 6)
    assert [(f.in_features, f.out_features) for f in factors] == [(40, 6), (6, 30)]
    x = torch.randn(5, 40)
    assert error < 1e-6 and _relative(factors(x), linear(x)) < 1e-5
    # A lower rank than the weight's: a real, bounded error that grows as the rank falls.
    errors = [svd_linear(linear, rank)[1] for rank in (5, 3, 1)]
    assert 0 < errors[0] < errors[1] < errors[2] < 1


def test_which_layers_factorise_and_how():
    assert factorisation_kind(nn.Linear(8, 8)) == "svd"
    assert factorisation_kind(nn.Conv2d(8, 8, 1)) == "svd"
    assert factorisation_kind(nn.Conv2d(8, 8, 3)) == "tucker2"
    assert factorisation_kind(nn.Conv2d(8, 8, 3, groups=8)) is None  # depthwise
    assert factorisation_kind(nn.Conv2d(8, 8, 3, groups=2)) is None
    assert factorisation_kind(nn.BatchNorm2d(8)) is None


def test_a_replacement_is_made_only_where_it_holds_fewer_weights():
    assert low_rank_replacement(nn.Conv2d(32, 32, 3, groups=32), 0.25) is None
    # 8 -> 8 at the smallest rank (8): the factors hold more weights than the layer.
    assert low_rank_replacement(nn.Conv2d(8, 8, 3), 0.25) is None
    assert low_rank_replacement(nn.Linear(16, 16), 0.5) is None
    conv = nn.Conv2d(64, 64, 3, padding=1)
    factors = low_rank_replacement(conv, 0.25)
    assert [f.out_channels for f in factors] == [16, 16, 64]
    assert count_macs(_as_model(factors), 8, 64) < count_macs(_as_model(conv), 8, 64)
    linear = low_rank_replacement(nn.Linear(64, 32), 0.25)
    assert [(f.in_features, f.out_features) for f in linear] == [(64, 8), (8, 32)]


def test_ranks_round_up_to_a_multiple_and_never_past_the_width():
    assert round_rank(5, 64) == 8
    assert round_rank(16, 64) == 16
    assert round_rank(17, 64) == 24
    assert round_rank(70, 64) == 64
    assert round_rank(3, 64, multiple=4) == 4


def test_energy_rank_keeps_the_asked_share_of_the_squared_norm():
    matrix = np.diag([3.0, 2.0, 1.0])  # squared: 9, 4, 1 of 14
    assert energy_rank(matrix, 9 / 14) == 1
    assert energy_rank(matrix, 0.65) == 2
    assert energy_rank(matrix, 13 / 14) == 2
    assert energy_rank(matrix, 1.0) == 3


def test_vbmf_finds_the_rank_of_a_low_rank_matrix_under_noise():
    rng = np.random.default_rng(0)
    signal = rng.standard_normal((60, 5)) @ rng.standard_normal((5, 80))
    noisy = signal + 0.05 * rng.standard_normal((60, 80))
    assert vbmf_rank(noisy) == 5
    assert vbmf_rank(noisy.T) == 5

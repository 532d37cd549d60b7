"""Low-rank factorisations of conv and linear layers, and the rank rules that choose them.

Tucker-2 of a k x k conv: 1x1 (in -> r_in), k x k core (r_in -> r_out, with the original
stride, padding and dilation), 1x1 (r_out -> out, with the original bias).
A 1x1 conv or a Linear layer gets two factors from a truncated SVD.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def factorisation_kind(module: nn.Module) -> str | None:
    """svd (Linear, 1x1 conv), tucker2 (k x k conv) or None: depthwise and grouped convs
    cannot be usefully factorised."""
    if isinstance(module, nn.Linear):
        return "svd"
    if isinstance(module, nn.Conv2d) and module.groups == 1:
        return "svd" if module.kernel_size == (1, 1) else "tucker2"
    return None


def low_rank_replacement(module: nn.Module, rank_fraction: float, multiple: int = 8
                         ) -> nn.Sequential | None:
    """`module` factorised with ranks of `rank_fraction` of its widths (rounded up to
    `multiple`); None where it cannot be factorised or the factors would hold as many
    weights as the layer."""
    kind = factorisation_kind(module)
    if kind is None:
        return None
    if isinstance(module, nn.Linear):
        out, inp, k2 = module.out_features, module.in_features, 1
    else:
        out, inp = module.out_channels, module.in_channels
        k2 = module.kernel_size[0] * module.kernel_size[1]
    if kind == "tucker2":
        rank_out = round_rank(rank_fraction * out, out, multiple)
        rank_in = round_rank(rank_fraction * inp, inp, multiple)
        if inp * rank_in + rank_in * rank_out * k2 + rank_out * out >= inp * out * k2:
            return None
        return tucker2_conv(module, rank_out, rank_in)[0]
    rank = round_rank(rank_fraction * min(out, inp), min(out, inp), multiple)
    if rank * (inp + out) >= inp * out:
        return None
    replace = svd_linear if isinstance(module, nn.Linear) else svd_conv1x1
    return replace(module, rank)[0]


def round_rank(rank: float, limit: int, multiple: int = 8) -> int:
    """Round up to a multiple of `multiple`, never above the layer's own width."""
    return int(min(limit, max(multiple, math.ceil(rank / multiple) * multiple)))


def energy_rank(matrix: np.ndarray, energy: float) -> int:
    """Smallest rank whose singular values keep `energy` of the squared Frobenius norm."""
    singular = np.linalg.svd(matrix, compute_uv=False)
    cumulative = np.cumsum(singular ** 2) / np.sum(singular ** 2)
    return int(np.searchsorted(cumulative, energy - 1e-12) + 1)


def _evb_tau(x: np.ndarray, alpha: float) -> np.ndarray:
    return 0.5 * (x - (1 + alpha) + np.sqrt((x - (1 + alpha)) ** 2 - 4 * alpha))


def vbmf_rank(matrix: np.ndarray) -> int:
    """Rank chosen by empirical variational Bayesian matrix factorisation (Nakajima et al.
    2013), as Kim et al. 2016 use for Tucker ranks; the noise variance is estimated too."""
    from scipy.optimize import minimize_scalar

    y = matrix if matrix.shape[0] <= matrix.shape[1] else matrix.T
    rows, cols = y.shape
    alpha = rows / cols
    tau_bar = 2.5129 * math.sqrt(alpha)
    x_bar = (1 + tau_bar) * (1 + alpha / tau_bar)
    s = np.linalg.svd(y, compute_uv=False)
    upper = np.sum(s ** 2) / (rows * cols)
    bound_index = int(min(math.ceil(rows / (1 + alpha)) - 1, rows)) - 1
    tail = s[bound_index + 1:] if bound_index + 1 < len(s) else s[-1:]
    lower = max(tail[0] ** 2 / (cols * x_bar), np.mean(tail ** 2) / cols)

    def objective(sigma2: float) -> float:
        x = s ** 2 / (cols * sigma2)
        above, below = x[x > x_bar], x[x <= x_bar]
        tau = _evb_tau(above, alpha)
        return (np.sum(below - np.log(below)) + np.sum(above - tau)
                + np.sum(np.log((tau + 1) / above)) + alpha * np.sum(np.log(tau / alpha + 1)))

    if lower >= upper:
        return len(s)
    sigma2 = minimize_scalar(objective, bounds=(lower, upper), method="bounded").x
    threshold = math.sqrt(cols * sigma2 * (1 + tau_bar) * (1 + alpha / tau_bar))
    return max(1, int(np.sum(s > threshold)))


def unfold(weight: np.ndarray, mode: int) -> np.ndarray:
    return np.moveaxis(weight, mode, 0).reshape(weight.shape[mode], -1)


def _relative_error(original: torch.Tensor, approx: torch.Tensor) -> float:
    return float(torch.linalg.norm(original - approx) / torch.linalg.norm(original))


def tucker2_conv(conv: nn.Conv2d, rank_out: int, rank_in: int) -> tuple[nn.Sequential, float]:
    """Replace a k x k conv (groups 1) by 1x1 -> k x k -> 1x1; return it and the weight's
    relative reconstruction error."""
    import tensorly as tl
    from tensorly.decomposition import partial_tucker

    weight = conv.weight.detach().double().cpu().numpy()
    (core, (u_out, u_in)), _ = partial_tucker(weight, rank=[rank_out, rank_in], modes=[0, 1],
                                              init="svd", random_state=0)
    first = nn.Conv2d(conv.in_channels, rank_in, 1, bias=False)
    middle = nn.Conv2d(rank_in, rank_out, conv.kernel_size, conv.stride, conv.padding,
                       conv.dilation, bias=False)
    last = nn.Conv2d(rank_out, conv.out_channels, 1, bias=conv.bias is not None)
    dtype = conv.weight.dtype
    first.weight.data = torch.from_numpy(u_in.T.copy())[:, :, None, None].to(dtype)
    middle.weight.data = torch.from_numpy(np.ascontiguousarray(core)).to(dtype)
    last.weight.data = torch.from_numpy(u_out.copy())[:, :, None, None].to(dtype)
    if conv.bias is not None:
        last.bias.data = conv.bias.detach().clone()
    approx = torch.from_numpy(tl.tenalg.multi_mode_dot(core, [u_out, u_in], modes=[0, 1]))
    return nn.Sequential(first, middle, last), _relative_error(
        conv.weight.detach().double().cpu(), approx)


def _svd_factors(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """matrix (out x in) ~ left (out x r) @ right (r x in), singular values split evenly."""
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    root = torch.sqrt(s[:rank])
    left, right = u[:, :rank] * root, root[:, None] * vh[:rank]
    return left, right, _relative_error(matrix.double(), left @ right)


def svd_conv1x1(conv: nn.Conv2d, rank: int) -> tuple[nn.Sequential, float]:
    left, right, error = _svd_factors(conv.weight.detach()[:, :, 0, 0].cpu(), rank)
    first = nn.Conv2d(conv.in_channels, rank, 1, conv.stride, conv.padding, bias=False)
    last = nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None)
    dtype = conv.weight.dtype
    first.weight.data = right.to(dtype)[:, :, None, None].contiguous()
    last.weight.data = left.to(dtype)[:, :, None, None].contiguous()
    if conv.bias is not None:
        last.bias.data = conv.bias.detach().clone()
    return nn.Sequential(first, last), error


def svd_linear(linear: nn.Linear, rank: int) -> tuple[nn.Sequential, float]:
    left, right, error = _svd_factors(linear.weight.detach().cpu(), rank)
    first = nn.Linear(linear.in_features, rank, bias=False)
    last = nn.Linear(rank, linear.out_features, bias=linear.bias is not None)
    first.weight.data = right.to(linear.weight.dtype).contiguous()
    last.weight.data = left.to(linear.weight.dtype).contiguous()
    if linear.bias is not None:
        last.bias.data = linear.bias.detach().clone()
    return nn.Sequential(first, last), error

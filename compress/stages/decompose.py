"""Tucker-2 / SVD decomposition of conv and linear layers, only where it removes MACs."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, model_validator
from torch import nn

from compress.measure.macs import layer_positions
from compress.ops.decomposition import (
    energy_rank,
    factorisation_kind,
    round_rank,
    svd_conv1x1,
    svd_linear,
    tucker2_conv,
    unfold,
    vbmf_rank,
)
from compress.stages.base import Stage, StageConfig, StageContext, StageOutput, StageResult
from compress.stages.registry import register_stage

Rank = int | tuple[int, int]


@dataclass(frozen=True)
class DecomposeResult(StageResult):
    rank_rule: str = ""
    decomposed: dict[str, dict[str, Any]] = field(default_factory=dict)  # layer -> ranks, MACs
    skipped: dict[str, str] = field(default_factory=dict)  # layer -> why it was left alone


class DecomposeConfig(StageConfig):
    ranks: Literal["ratio", "energy", "vbmf", "map"] = "energy"
    ratio: float = Field(0.5, gt=0, le=1, description="rank / width, for ranks: ratio")
    energy: float = Field(0.9, gt=0, le=1, description="kept spectrum energy, ranks: energy")
    rank_map: dict[str, Rank] = Field(default_factory=dict,
                                      description="layer name -> rank or [out, in], ranks: map")
    min_macs_reduction: float = Field(0.2, ge=0, lt=1,
                                      description="decompose a layer only if its MACs fall "
                                                  "by at least this fraction")
    min_layer_macs: int = Field(100_000, ge=0, description="leave smaller layers alone")
    round_to: int = Field(8, ge=1)
    layers: list[str] = Field(default_factory=lambda: ["*"], description="name patterns")
    ignore: list[str] = Field(default_factory=list)
    pointwise: bool = Field(True, description="SVD of 1x1 convs")
    linear: bool = Field(True, description="SVD of Linear layers")

    @model_validator(mode="after")
    def _map_needs_entries(self):
        if self.ranks == "map" and not self.rank_map:
            raise ValueError("ranks: map needs a rank_map of layer name -> rank")
        return self


def _macs(module: nn.Module, kind: str, ranks: tuple[int, int] | None,
          pixels: tuple[int, int]) -> int:
    pixels_in, pixels_out = pixels
    if isinstance(module, nn.Linear):
        o, i, k2 = module.out_features, module.in_features, 1
    else:
        o, i = module.out_channels, module.in_channels
        k2 = module.kernel_size[0] * module.kernel_size[1]
    if ranks is None:
        return o * i * k2 * pixels_out
    r_out, r_in = ranks
    if kind == "tucker2":
        return i * r_in * pixels_in + r_in * r_out * k2 * pixels_out + r_out * o * pixels_out
    # SVD: the first factor keeps the stride, so it runs at output resolution.
    return (i * r_out + r_out * o) * pixels_out


@register_stage
class Decompose(Stage):
    name = "decompose"
    Config = DecomposeConfig
    config: DecomposeConfig

    def _selected(self, name: str) -> bool:
        cfg = self.config
        return (any(fnmatch.fnmatchcase(name, p) for p in cfg.layers)
                and not any(fnmatch.fnmatchcase(name, p) for p in cfg.ignore))

    def check(self, model: nn.Module) -> None:
        modules = dict(model.named_modules())
        for name, rank in self.config.rank_map.items():
            module = modules.get(name)
            kind = factorisation_kind(module) if module is not None else None
            if kind is None:
                raise ValueError(f"rank_map: {name!r} is not a decomposable conv or linear layer")
            out_dim, in_dim = self._dims(module)
            r_out, r_in = (rank, rank) if isinstance(rank, int) else rank
            if kind == "svd" and r_out > min(out_dim, in_dim):
                raise ValueError(f"rank_map: rank {r_out} of {name} is larger than the layer "
                                 f"({out_dim}x{in_dim})")
            if kind == "tucker2" and (r_out > out_dim or r_in > in_dim):
                raise ValueError(f"rank_map: ranks {[r_out, r_in]} of {name} are larger than "
                                 f"the layer ({out_dim} out, {in_dim} in)")

    @staticmethod
    def _dims(module: nn.Module) -> tuple[int, int]:
        if isinstance(module, nn.Linear):
            return module.out_features, module.in_features
        return module.out_channels, module.in_channels

    def choose_ranks(self, name: str, module: nn.Module, kind: str) -> tuple[int, int] | None:
        """(rank_out, rank_in) for Tucker-2, (rank, rank) for SVD; None = leave the layer."""
        cfg = self.config
        out_dim, in_dim = self._dims(module)
        weight = module.weight.detach().double().cpu().numpy()
        if cfg.ranks == "map":
            if name not in cfg.rank_map:
                return None
            rank = cfg.rank_map[name]
            return (rank, rank) if isinstance(rank, int) else tuple(rank)
        if kind == "svd":
            matrix = weight.reshape(out_dim, in_dim)
            raw = {"ratio": lambda: cfg.ratio * min(out_dim, in_dim),
                   "energy": lambda: energy_rank(matrix, cfg.energy),
                   "vbmf": lambda: vbmf_rank(matrix)}[cfg.ranks]()
            rank = round_rank(raw, min(out_dim, in_dim), cfg.round_to)
            return rank, rank
        rule = {"ratio": lambda mode, dim: cfg.ratio * dim,
                "energy": lambda mode, dim: energy_rank(unfold(weight, mode), cfg.energy),
                "vbmf": lambda mode, dim: vbmf_rank(unfold(weight, mode))}[cfg.ranks]
        return (round_rank(rule(0, out_dim), out_dim, cfg.round_to),
                round_rank(rule(1, in_dim), in_dim, cfg.round_to))

    def apply(self, model: nn.Module, ctx: StageContext) -> StageOutput:
        cfg = self.config
        pixels = layer_positions(model, ctx.input_size)
        layers, skipped = {}, {}
        candidates = [(n, m, factorisation_kind(m)) for n, m in model.named_modules()
                      if factorisation_kind(m) and self._selected(n)]
        for name, module, kind in candidates:
            if (kind == "svd" and isinstance(module, nn.Linear) and not cfg.linear) or \
                    (kind == "svd" and isinstance(module, nn.Conv2d) and not cfg.pointwise):
                continue
            before = _macs(module, kind, None, pixels[name])
            if before < cfg.min_layer_macs and cfg.ranks != "map":
                skipped[name] = "tiny"
                continue
            ranks = self.choose_ranks(name, module, kind)
            if ranks is None:
                continue
            after = _macs(module, kind, ranks, pixels[name])
            if after > (1 - cfg.min_macs_reduction) * before:
                skipped[name] = f"ranks {list(ranks)} would keep {after / before:.0%} of MACs"
                continue
            if kind == "tucker2":
                replacement, error = tucker2_conv(module, *ranks)
            elif isinstance(module, nn.Linear):
                replacement, error = svd_linear(module, ranks[0])
            else:
                replacement, error = svd_conv1x1(module, ranks[0])
            model.set_submodule(name, replacement)
            layers[name] = {"method": kind, "shape": list(self._dims(module)),
                            "ranks": list(ranks) if kind == "tucker2"
                            else [ranks[0]], "macs_before": before, "macs_after": after,
                            "relative_error": error}
        return StageOutput(model, DecomposeResult(rank_rule=cfg.ranks, decomposed=layers,
                                                  skipped=skipped))

"""Which torch device a run uses (`auto`: CUDA when there is one, `cpu` or `cuda[:N]`), and
what the CPU can do where it matters for a decision (INT8 dot products)."""

from __future__ import annotations

import platform

import torch

from compress.errors import UserError
from compress.measure.machine import cpuinfo_field


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device}: CUDA is not available on this machine")
    return torch.device(device)


# x86 instructions that multiply-add 8-bit integers into 32 bits without saturating.
INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux); empty where they cannot be read."""
    return set((cpuinfo_field("flags") or "").split())


def int8_saturation_remedy(flags: set[str], machine: str | None = None) -> str:
    """ONNX Runtime's U8S8 kernels on x86 without VNNI (AVX2, or AVX-512 without VNNI) use
    VPMADDUBSW, whose 16-bit sums can saturate; its documentation gives 7-bit weights
    (reduce_range) as a remedy. Measured here: 96.0 % top-1 agreement with float32 on an
    AVX2-only CPU where an AVX-512 VNNI CPU gave 98.7 % (the shipped MobileNetV3)."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686"):
        return "none"  # other instruction sets have other kernels
    return "none" if flags & set(INT8_DOT_PRODUCT_FLAGS) else "reduce_range"

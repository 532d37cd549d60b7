"""ONNX export (opset >= 17, dynamic batch), optionally FP16, checked against torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import Field
from torch import nn

from compress.errors import StageFailed
from compress.measure.latency import Comparison
from compress.measure.parity import FP16_MIN_TOP1_AGREEMENT, FP32_MAX_RELATIVE_ERROR, check_parity
from compress.ops.onnx_export import convert_fp16, export_onnx
from compress.stages.base import (
    ParityRow,
    Stage,
    StageConfig,
    StageContext,
    StageOutput,
    StageResult,
)
from compress.stages.registry import register_stage


@dataclass(frozen=True)
class ExportResult(StageResult):
    fp16: bool = False
    opset: int = 17
    checks: dict[str, Any] = field(default_factory=dict)  # parity with torch per precision
    fp16_speedup_vs_float32_b1: float | None = None
    fp16_timing_disturbed: bool = False  # other processes used the cores throughout it


class ExportConfig(StageConfig):
    fp16: bool = Field(False, description="FP16 weights and compute, float32 input/output")
    opset: int = Field(17, ge=17, le=23)
    check_images: int = Field(64, ge=1, description="real images compared with torch")


def parity_images(ctx: StageContext, count: int) -> tuple[torch.Tensor, str]:
    """Real val images through the test transform, or seeded noise when there is no data."""
    if ctx.data is not None:
        images = [ctx.data.val[i][0] for i in range(min(count, len(ctx.data.val)))]
        return torch.stack(images), "val images"
    generator = torch.Generator().manual_seed(ctx.seed)
    return torch.randn(count, 3, ctx.input_size, ctx.input_size, generator=generator), \
        "random inputs (no data)"


def _fp16_speed(fp32_path, fp16_path, ctx: StageContext) -> tuple[Comparison, str]:
    """FP16 is a GPU format: say what it costs or gains on the device the run measures."""
    timing = ctx.measurer.compare_files(fp32_path, fp16_path)
    ratio = timing.ratio
    provider = ctx.measurer.provider
    where = "OpenVINO (CPU)" if ctx.measurer.onnx_runtime.runtime == "openvino" else provider
    verdict = "slower" if ratio < 1 else "faster"
    hint = " (CPUs have no fast FP16 arithmetic: keep float32 or use INT8 there; FP16 is " \
           "for CUDA / TensorRT)" if provider == "cpu" and ratio < 1 else ""
    return timing, (f"FP16 is {verdict} than float32 on {where}: {ratio:.2f}x at batch 1 "
                    f"({timing.spread_text}){hint}")


def _check_fp32(parity: dict, runtime: str) -> None:
    if parity["relative_error"] > FP32_MAX_RELATIVE_ERROR:
        raise StageFailed(f"export: float32 ONNX in {runtime} differs from torch, relative "
                          f"error {parity['relative_error']:.2e} > {FP32_MAX_RELATIVE_ERROR:.0e}")


def _check_fp16(parity: dict, runtime: str, source: str) -> None:
    if parity["top1_agreement"] < FP16_MIN_TOP1_AGREEMENT:
        raise StageFailed(f"export: FP16 in {runtime}: top-1 agreement "
                          f"{parity['top1_agreement']:.1%} < {FP16_MIN_TOP1_AGREEMENT:.0%} on "
                          f"{source}")


@register_stage
class Export(Stage):
    name = "export"
    Config = ExportConfig
    config: ExportConfig

    @classmethod
    def parity_rows(cls, result: dict[str, Any]) -> list[ParityRow]:
        return [ParityRow(name, check.get("relative_error"), check.get("top1_agreement"))
                for name, check in (result.get("checks") or {}).items()
                if isinstance(check, dict)]

    def apply(self, model: nn.Module, ctx: StageContext) -> StageOutput:
        cfg = self.config
        deployable = ctx.stage_dir / "model.onnx"
        fp32_path = ctx.stage_dir / ("model_fp32.onnx" if cfg.fp16 else "model.onnx")
        export_onnx(model, fp32_path, ctx.input_size, cfg.opset, ctx.classes)
        images, source = parity_images(ctx, cfg.check_images)
        fp32 = check_parity(model, fp32_path, images)
        checks = {"fp32": fp32, "check_inputs": source}
        _check_fp32(fp32, "ONNX Runtime")
        # Where the stages are timed in OpenVINO, the file is checked in it too: that is
        # where it will run.
        in_openvino = ctx.measurer.onnx_runtime.runtime == "openvino"
        if in_openvino:
            checks["openvino_fp32"] = check_parity(model, fp32_path, images,
                                                   ctx.measurer.runner(fp32_path))
            _check_fp32(checks["openvino_fp32"], "OpenVINO")
        if cfg.fp16:
            convert_fp16(fp32_path, deployable)
            checks["fp16"] = check_parity(model, deployable, images)
            _check_fp16(checks["fp16"], "ONNX Runtime", source)
            if in_openvino:
                checks["openvino_fp16"] = check_parity(model, deployable, images,
                                                       ctx.measurer.runner(deployable))
                _check_fp16(checks["openvino_fp16"], "OpenVINO", source)
            timing, note = _fp16_speed(fp32_path, deployable, ctx)
            return StageOutput(model, ExportResult(
                note=note, fp16=True, opset=cfg.opset, checks=checks,
                fp16_speedup_vs_float32_b1=timing.ratio,
                fp16_timing_disturbed=timing.disturbed), onnx=deployable)
        return StageOutput(model, ExportResult(fp16=False, opset=cfg.opset, checks=checks),
                           onnx=deployable)

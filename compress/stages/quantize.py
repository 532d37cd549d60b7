"""INT8 quantization with ONNX Runtime (or OpenVINO's NNCF: `quantizer: nncf`), kept only when
it is correct and (by default) faster.

The stage exports the float32 model, runs ONNX Runtime's pre-processing (shape inference
and graph optimisation), quantizes statically (calibrated on training images through the
test transform) or dynamically, checks top-1 agreement with float32 on the images held
out of the input model's training (val when the checkpoint records none), reports it on
val too, times both interleaved, and writes the chosen file as the stage's model.onnx. The torch model is not
changed: quantization lives in the ONNX file, which is what the pipeline measures.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from compress.device import cpu_flags, int8_saturation_remedy
from compress.errors import StageFailed
from compress.fileio import atomic_path, copy_atomic
from compress.ops.nncf_quantize import nncf_problem, quantize_with_nncf
from compress.ops.onnx_export import export_onnx, set_metadata
from compress.stages.base import (
    ParityRow,
    Stage,
    StageConfig,
    StageContext,
    StageOutput,
    StageResult,
)
from compress.stages.export import parity_images
from compress.stages.registry import register_stage


@dataclass(frozen=True)
class QuantizeResult(StageResult):
    kept: Literal["int8", "float32"] = "float32"
    top1_agreement: float = 0.0  # INT8 against float32, on the images the choice is judged on
    checked_on: str = ""
    val_top1_agreement: float | None = None  # reported only (None without data)
    calibrated_on: str = ""
    int8_speedup_vs_float32_b1: float = 1.0
    int8_speedup_spread: list[float] | None = None  # p10 and p90 over cycles
    timing_disturbed: bool = False  # other processes used the cores throughout the timing
    float32_b1_ms: float = 0.0
    int8_b1_ms: float = 0.0
    int8_ops: dict[str, int] = field(default_factory=dict)
    excluded_nodes: list[str] = field(default_factory=list)
    macro_f1: dict[str, float] | None = None  # float32, int8, change (None without data)
    saturation_remedy: str = "none"  # what `saturation` chose on this CPU


class QuantizeConfig(StageConfig):
    mode: Literal["static", "dynamic"] = Field(
        "static", description="static: calibrated activations (needs data); dynamic: "
        "activations quantized at run time")
    format: Literal["qdq", "qoperator"] = Field(
        "qdq", description="qdq: Q/DQ pairs around float ops; qoperator: QLinearConv & co.")
    per_channel: bool = True
    activations: Literal["uint8", "int8"] = "uint8"
    calibration_images: int = Field(200, ge=1, description="training images, test transform")
    ranges: Literal["per_image_quantile", "minmax", "entropy", "percentile"] = Field(
        "per_image_quantile", description="activation ranges: per_image_quantile takes, for "
        "every tensor, the range_quantile of the per-image maxima (and 1 - it of the minima); "
        "the others are ONNX Runtime's calibrators over all images at once")
    range_quantile: float = Field(0.95, gt=0.5, le=1.0)
    optimize_before: bool = Field(
        False, description="ONNX Runtime's graph optimisation in the pre-processing; it "
        "splits HardSwish into HardSigmoid + Mul, which then run as slow QLinearMul")
    op_types: list[str] | None = Field(
        None, description="op types to quantize, e.g. [Conv]; null: ONNX Runtime's default")
    exclude: list[str] = Field(
        default_factory=list, description="node-name patterns (fnmatch) kept in float32")
    min_agreement: float = Field(
        0.98, ge=0, le=1, description="top-1 agreement with float32 on the held-out train "
        "images (val where the checkpoint records none)")
    keep: Literal["fastest", "int8"] = Field(
        "fastest", description="fastest: keep float32 when INT8 is not faster (or not "
        "correct); int8: always keep INT8 (fails when not correct)")
    timing_runs: int = Field(200, ge=10, description="batch-1 runs each, interleaved")
    saturation: Literal["auto", "reduce_range", "u8u8", "none"] = Field(
        "auto", description="remedy for the U8S8 saturation of x86 CPUs without VNNI: auto "
        "takes reduce_range (7-bit weights) there and none on CPUs with VNNI; u8u8: unsigned "
        "weights (ONNX Runtime's other documented remedy)")
    quantizer: Literal["onnxruntime", "nncf"] = Field(
        "onnxruntime", description="who writes the INT8 file: ONNX Runtime's static "
        "quantiser, or OpenVINO's NNCF (post-training, its ONNX backend; the openvino extra; "
        "static only; exclude is honoured, the range options are ONNX Runtime's). Either way "
        "the file is timed and checked in the stages' runtime and kept only where it is "
        "faster and correct")
    nncf_preset: Literal["performance", "mixed"] = Field(
        "performance", description="NNCF's preset: performance (symmetric activations) or "
        "mixed (asymmetric activations)")
    min_speedup: float = Field(
        1.2, ge=1.0, description="keep: fastest switches to INT8 only above this speed-up: on a "
        "2-core AMD EPYC VM (2026-11-23) one pruned model's INT8 measured 0.81x, 1.12x and "
        "1.17x in three runs of 200 interleaved runs each; a smaller gain is noise on such "
        "a machine, and INT8 costs some macro F1")

    @model_validator(mode="after")
    def _nncf_can_run(self) -> "QuantizeConfig":
        if self.quantizer == "nncf":
            if self.mode != "static":
                raise ValueError("quantizer nncf is static quantisation: drop mode: dynamic")
            problem = nncf_problem()
            if problem:
                raise ValueError(f"quantizer nncf: {problem}")
        return self


def choose_model(agreement: float, min_agreement: float, speedup: float,
                 keep: str, min_speedup: float = 1.0) -> tuple[str, str]:
    """Which file the stage keeps ("int8" or "float32") and why, from measured figures."""
    correct = agreement >= min_agreement
    if keep == "int8":
        if not correct:
            raise StageFailed(f"quantize: INT8 top-1 agreement with float32 {agreement:.1%} "
                              f"< {min_agreement:.0%}")
        return "int8", f"INT8 kept (keep: int8); {speedup:.2f}x the float32 speed"
    if not correct:
        return "float32", (f"INT8 rejected: top-1 agreement {agreement:.1%} < "
                           f"{min_agreement:.0%}; float32 kept")
    if speedup <= min_speedup:
        return "float32", (f"INT8 not faster here ({speedup:.2f}x the float32 speed at batch 1,"
                           f" needed > {min_speedup:.2f}x); float32 kept (keep: fastest)")
    return "int8", f"INT8 kept: {speedup:.2f}x the float32 speed at batch 1"


class _Calibration:
    """onnxruntime.quantization.CalibrationDataReader over preprocessed images."""

    def __init__(self, input_name: str, images: torch.Tensor):
        self._batches = iter([{input_name: image[None].numpy()} for image in images])

    def get_next(self):
        return next(self._batches, None)


def per_image_quantile_ranges(model_path: Path, images: torch.Tensor, quantile: float,
                              work_dir: Path) -> dict[str, list[dict[str, np.float32]]]:
    """Activation ranges for every tensor: the `quantile` of the per-image maxima and the
    1 - `quantile` of the per-image minima (always including 0).

    MinMax takes the extreme over all calibration images, so one unusual image widens a
    tensor's range and coarsens its step for every other image; on MobileNetV3 the error
    then blows up in the late squeeze-excite blocks (seen: 68 % top-1 agreement with
    float32 on TrashNet val; 98.9 % with these ranges)."""
    from onnxruntime.quantization.qdq_loss_debug import modify_model_output_intermediate_tensors

    from compress.measure.runners import open_session

    probe = work_dir / "calibration_probe.onnx"
    modify_model_output_intermediate_tensors(str(model_path), str(probe))
    session, _ = open_session(probe)
    names = [output.name for output in session.get_outputs()]
    input_name = session.get_inputs()[0].name
    minima, maxima = [], []
    for image in images:
        outputs = session.run(names, {input_name: image[None].numpy()})
        minima.append([float(o.min()) if o.size else 0.0 for o in outputs])
        maxima.append([float(o.max()) if o.size else 0.0 for o in outputs])
    probe.unlink()
    low = np.minimum(np.quantile(np.array(minima), 1 - quantile, axis=0), 0.0)
    high = np.maximum(np.quantile(np.array(maxima), quantile, axis=0), 0.0)
    ranges = {name: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}]
              for name, lo, hi in zip(names, low, high)}
    images_np = images.numpy()
    ranges[input_name] = [{"rmin": np.float32(min(np.quantile(images_np.min((1, 2, 3)),
                                                              1 - quantile), 0.0)),
                           "rmax": np.float32(max(np.quantile(images_np.max((1, 2, 3)),
                                                              quantile), 0.0))}]
    return ranges


def calibration_images(ctx: StageContext, count: int) -> tuple[torch.Tensor, str]:
    """`count` training images, spread over the classes by a seeded draw, through the test
    transform (the model sees test-time inputs, not augmented ones). Ranges come from the
    images the model trained on, not from the held-out ones that judge the result: on the
    shipped baseline, 164 held-out images as ranges gave 89.0 % top-1 agreement on them
    (90.7 % on val) against 97.0 % from 200 train images (96.6 % on val)."""
    subset = ctx.data.calibration_images(count, ctx.input_size, ctx.seed)
    return torch.stack([image for image, _ in subset]), f"{len(subset)} train images"


def _labelled_images(dataset) -> tuple[torch.Tensor, np.ndarray]:
    return torch.stack([dataset[i][0] for i in range(len(dataset))]), np.array(dataset.targets)


@register_stage
class Quantize(Stage):
    name = "quantize"
    Config = QuantizeConfig
    config: QuantizeConfig

    def needs_data(self) -> bool:
        return self.config.mode == "static"

    @classmethod
    def parity_rows(cls, result: dict[str, Any]) -> list[ParityRow]:
        if result.get("top1_agreement") is None:
            return []
        return [ParityRow(f"INT8 against float32 ({result.get('checked_on', '')})", None,
                          result["top1_agreement"])]

    def apply(self, model: nn.Module, ctx: StageContext) -> StageOutput:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        cfg = self.config
        float_path = export_onnx(model, ctx.stage_dir / "model_fp32.onnx", ctx.input_size,
                                 classes=ctx.classes)
        prepared = ctx.stage_dir / "model_fp32_prep.onnx"
        quant_pre_process(str(float_path), str(prepared),
                          skip_optimization=not cfg.optimize_before)
        int8_path = ctx.stage_dir / "model_int8.onnx"
        remedy = self.config.saturation if self.config.saturation != "auto" else \
            int8_saturation_remedy(cpu_flags())
        excluded, calibrated_on = self._quantize(prepared, int8_path, ctx, remedy)
        if ctx.data is None:
            images, source = parity_images(ctx, 64)
            judged = {"": (images, None)}
        else:
            source = "held-out train images" if ctx.data.calibration is not None else "val images"
            judged = {"": _labelled_images(ctx.data.decision_split)}
            judged["val"] = _labelled_images(ctx.data.val)
        top1 = {split: [ctx.measurer.top1(p, images) for p in (float_path, int8_path)]
                for split, (images, _) in judged.items()}
        agreement = float(np.mean(top1[""][0] == top1[""][1]))
        timing = ctx.measurer.compare_files(float_path, int8_path, runs=cfg.timing_runs)
        choice, reason = choose_model(agreement, cfg.min_agreement, timing.ratio, cfg.keep,
                                      cfg.min_speedup)
        deployable = ctx.stage_dir / "model.onnx"
        copy_atomic(int8_path if choice == "int8" else float_path, deployable)
        macro_f1 = val_agreement = None
        if "val" in judged:  # val is reported, never decided on
            targets = judged["val"][1]
            macro_f1 = {name: ctx.measurer.macro_f1(targets, predicted)
                        for name, predicted in zip(("float32", "int8"), top1["val"])}
            macro_f1["change"] = macro_f1["int8"] - macro_f1["float32"]
            val_agreement = float(np.mean(top1["val"][0] == top1["val"][1]))
        return StageOutput(model, QuantizeResult(
            note=f"{reason} (speed-up {timing.spread_text})", kept=choice, top1_agreement=agreement,
            checked_on=f"{len(judged[''][0])} {source}", val_top1_agreement=val_agreement,
            calibrated_on=calibrated_on, int8_speedup_vs_float32_b1=timing.ratio,
            int8_speedup_spread=[timing.ratio_p10, timing.ratio_p90],
            timing_disturbed=timing.disturbed,
            float32_b1_ms=timing.a.median_ms, int8_b1_ms=timing.b.median_ms,
            int8_ops=_op_counts(int8_path), excluded_nodes=excluded, macro_f1=macro_f1,
            saturation_remedy=remedy),
            onnx=deployable)

    def _quantize(self, prepared: Path, out: Path, ctx: StageContext, remedy: str
                  ) -> tuple[list[str], str]:
        """Write the INT8 model to `out`; return the nodes kept in float32 and the images
        its ranges come from."""
        import onnx
        from onnxruntime import quantization as q

        cfg = self.config
        graph = onnx.load(str(prepared)).graph
        weights = q.QuantType.QUInt8 if remedy == "u8u8" else q.QuantType.QInt8
        excluded = [n.name for n in graph.node
                    if any(fnmatch.fnmatch(n.name, p) for p in cfg.exclude)]
        if cfg.quantizer == "nncf":
            images, calibrated_on = calibration_images(ctx, cfg.calibration_images)
            quantize_with_nncf(prepared, out, images.numpy(), excluded, cfg.nncf_preset)
            calibrated_on += f" (NNCF, preset {cfg.nncf_preset})"
        elif cfg.mode == "dynamic":
            q.quantize_dynamic(str(prepared), str(out), per_channel=cfg.per_channel,
                               weight_type=weights, reduce_range=remedy == "reduce_range",
                               nodes_to_exclude=excluded,
                               op_types_to_quantize=cfg.op_types)
            calibrated_on = "none (dynamic)"
        else:
            images, calibrated_on = calibration_images(ctx, cfg.calibration_images)
            overrides = {} if cfg.ranges != "per_image_quantile" else \
                per_image_quantile_ranges(prepared, images, cfg.range_quantile, ctx.stage_dir)
            q.quantize_static(
                # With every tensor's range given, the calibrator's own pass is a formality.
                str(prepared), str(out),
                _Calibration(graph.input[0].name, images[:8] if overrides else images),
                quant_format=q.QuantFormat.QDQ if cfg.format == "qdq" else q.QuantFormat.QOperator,
                per_channel=cfg.per_channel, weight_type=weights,
                reduce_range=remedy == "reduce_range",
                activation_type=q.QuantType.QUInt8 if cfg.activations == "uint8"
                else q.QuantType.QInt8,
                op_types_to_quantize=cfg.op_types, nodes_to_exclude=excluded,
                calibrate_method={"entropy": q.CalibrationMethod.Entropy,
                                  "percentile": q.CalibrationMethod.Percentile}.get(
                                      cfg.ranges, q.CalibrationMethod.MinMax),
                extra_options={"TensorQuantOverrides": overrides} if overrides else None)
        quantized = onnx.load(str(out))
        set_metadata(quantized, ctx.classes, ctx.input_size)
        with atomic_path(out) as tmp:
            onnx.save(quantized, str(tmp))
        return excluded, calibrated_on


def _op_counts(path: Path) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))

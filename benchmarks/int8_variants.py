"""INT8 variants of the quantize stage on the shipped baseline (and optionally another
checkpoint): top-1 agreement with float32 on val, macro F1 change, batch-1 speed-up over
float32 (interleaved). Needs ../shared/data/trashnet (or --data).

    python benchmarks/int8_variants.py [--checkpoint CKPT] [--data ROOT] [--runs 300]

Reproduces: which quantize-stage settings keep INT8 correct and faster on MobileNetV3
(benchmarks/RESULTS.md, "INT8", history of 2026-11-23, measured against the 0.8262 baseline).
Run time on the 2-core VM: not timed.
Output: one line per variant on stdout: agreement, macro F1 float32 and INT8, speed-up.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import compress

REPO = Path(__file__).resolve().parents[1]
EARLY_BLOCKS = ["/model/model.0/*", "/model/model.1/*"]
VARIANTS = {
    "plain QDQ, MinMax, ORT pre-optimisation": {"ranges": "minmax", "optimize_before": True},
    "MinMax, HardSwish kept whole": {"ranges": "minmax"},
    "per-image q95 ranges": {},
    "per-image q95 ranges, stem + block 1 float32": {"exclude": EARLY_BLOCKS},
    "same, QOperator format": {"exclude": EARLY_BLOCKS, "format": "qoperator"},
    "same, per-tensor weights": {"exclude": EARLY_BLOCKS, "per_channel": False},
    "Conv only, MinMax": {"ranges": "minmax", "op_types": ["Conv"]},
    "dynamic": {"mode": "dynamic"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(REPO / "checkpoints" /
                                                    "mnv3_trashnet.safetensors"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "trashnet"))
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    if not Path(args.data, "val").is_dir():
        raise SystemExit(f"no data at {args.data}: give --data ROOT")
    print(f"{args.checkpoint}: speed-up = float32 median / INT8 median, batch 1, "
          f"interleaved, {args.runs} runs each; agreement and F1 on the val images")
    print(f"{'variant':<48}{'agreement':>10}{'F1 fp32':>9}{'F1 int8':>9}{'speed-up':>10}")
    for name, options in VARIANTS.items():
        recipe = compress.Recipe(
            checkpoint=args.checkpoint, data={"root": args.data},
            bench={"batch_sizes": [1], "warmup": 1, "runs": 3},  # the stage times itself
            stages=[{"quantize": {"keep": "fastest", "min_agreement": 0.0,
                                  "timing_runs": args.runs, **options}}])
        with tempfile.TemporaryDirectory() as tmp:
            d = compress.run(recipe, out=tmp, echo=lambda line: None)[-1].result
        print(f"{name:<48}{d['top1_agreement']:>10.1%}{d['macro_f1']['float32']:>9.4f}"
              f"{d['macro_f1']['int8']:>9.4f}{d['int8_speedup_vs_float32_b1']:>9.2f}x",
              flush=True)

if __name__ == "__main__":
    main()

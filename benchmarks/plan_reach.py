"""How fast can the plan's options make a model, taken by hand? Whole sets of cuts applied
to the shipped baseline (no training, no F1), each timed interleaved with the baseline at
batch 1: the reach a plan has on this device, to compare with what `plan` chose.

    python benchmarks/plan_reach.py [--checkpoint checkpoints/mnv3_trashnet.safetensors]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from tempfile import TemporaryDirectory

import compress

REPO = Path(__file__).resolve().parents[1]


def _outside(option, blocks: list) -> bool:
    return not any(option.target.startswith(block.target + ".") for block in blocks)


def _runner(onnx: Path):
    """The file in ONNX Runtime on the CPU."""
    return compress.open_model(onnx, compress.RunnerOptions(provider="cpu")).runner


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint",
                        default=str(REPO / "checkpoints" / "mnv3_trashnet.safetensors"))
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    checkpoint = compress.load_checkpoint(args.checkpoint)
    model, size = checkpoint.model.eval(), checkpoint.input_size
    options = compress.candidate_options(model, size, ["prune", "squeeze_excite", "residual_block"],
                                [0.75, 0.875], [])
    gates = [o for o in options if o.kind == "squeeze_excite"]
    blocks = [o for o in options if o.kind == "residual_block"]
    sets = {
        "prune 0.75 everywhere + every gate removed":
            [o for o in options if o.kind == "prune" and o.amount == 0.75] + gates,
        "prune 0.875 everywhere + every gate removed":
            [o for o in options if o.kind == "prune" and o.amount == 0.875] + gates,
        "prune 0.75 + every gate + every residual block removed":
            [o for o in options if o.kind == "prune" and o.amount == 0.75 and _outside(o, blocks)]
            + [o for o in gates if _outside(o, blocks)] + blocks,
    }
    with TemporaryDirectory() as tmp:
        baseline = _runner(compress.export_onnx(model, Path(tmp) / "baseline.onnx", size))
        for name, chosen in sets.items():
            changed = compress.apply_options(model, chosen, size)
            runner = _runner(compress.export_onnx(changed, Path(tmp) / "cut.onnx", size))
            comparison = compress.compare_latency(baseline, runner, size, runs=args.runs)
            macs = compress.count_macs(changed, size)
            print(f"{name}: {len(chosen)} cuts, {macs / 1e6:.1f} M MACs, "
                  f"{comparison.ratio:.2f}x faster (batch 1, interleaved, {args.runs} runs; "
                  f"{comparison.a.median_ms:.2f} -> {comparison.b.median_ms:.2f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

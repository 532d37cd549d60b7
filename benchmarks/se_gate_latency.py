"""What keeping some squeeze-excite gates costs in batch-1 latency (ONNX Runtime CPU).

Takes a checkpoint that still has its gates (for the default recipe: the model before its
drop stage, RUN/stages/02-finetune/model.safetensors), removes all gates but a kept subset,
exports each variant, and times every variant interleaved with the all-removed one
(benchmarks/retime.py), --rounds times. Prints each variant's latency as a multiple of the
all-removed model's. No accuracy here: a kept gate's worth shows only after fine-tuning.

    python benchmarks/se_gate_latency.py CHECKPOINT [--keep 4-6=model.4.0.conv.5,...]
        [--runs 600] [--rounds 2]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
from pathlib import Path

import compress
from compress import UserError


def subsets(gates: list[str], extra: list[str]) -> dict[str, list[str]]:
    """Kept gates per variant: all, the first and second half, each alone, and --keep."""
    half = len(gates) // 2
    chosen = {"all kept": gates, "first half kept": gates[:half],
              "second half kept": gates[half:]}
    chosen |= {f"{gate} kept": [gate] for gate in gates}
    for item in extra:
        name, _, paths = item.partition("=")
        kept = [p for p in paths.split(",") if p]
        unknown = sorted(set(kept) - set(gates))
        if not name or not kept or unknown:
            raise UserError(f"--keep {item!r}: give NAME=GATE,GATE with gates from "
                            + ", ".join(gates))
        chosen[name] = kept
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--keep", action="append", default=[], metavar="NAME=GATE,GATE",
                        help="an extra variant keeping these gates (repeatable)")
    parser.add_argument("--runs", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    try:
        if not Path(args.checkpoint).is_file():
            raise UserError(f"checkpoint not found: {args.checkpoint}")
        checkpoint = compress.load_checkpoint(args.checkpoint)
        gates = compress.squeeze_excite_paths(checkpoint.model)
        if not gates:
            raise UserError(f"{args.checkpoint} has no squeeze-excite gates left")
        variants = {"none kept": []} | subsets(gates, args.keep)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for index, (name, kept) in enumerate(variants.items()):
            model = copy.deepcopy(checkpoint.model).eval()
            compress.replace_with_identity(model, [g for g in gates if g not in kept])
            paths[name] = str(compress.export_onnx(model, Path(folder) / f"{index}.onnx",
                                          checkpoint.input_size))
        reference = paths.pop("none kept")
        ratios = {name: [c.ratio for c in rounds] for name, rounds in compress.retime(
            reference, paths, args.runs, args.rounds,
            echo=lambda line: print(line, file=sys.stderr, flush=True)).items()}
    print(f"latency as a multiple of the model without gates ({args.runs} interleaved runs, "
          f"median of {args.rounds} rounds)")
    for name, values in ratios.items():
        print(f"{name:<28} {statistics.median(1 / v for v in values):.2f}x   ("
              + ", ".join(f"{1 / v:.2f}x" for v in values) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())

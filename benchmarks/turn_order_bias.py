"""Does the order of models timed in turn bias their ratios? Ten copies of the shipped
baseline's ONNX file, timed in turn block by block (compress.time_in_turn),
with the order fixed and with the order rotating every cycle: every ratio should be 1.0.

    python benchmarks/turn_order_bias.py [--rounds 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from tempfile import TemporaryDirectory

import compress

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint",
                        default=str(REPO / "checkpoints" / "mnv3_trashnet.safetensors"))
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    checkpoint = compress.load_checkpoint(args.checkpoint)
    with TemporaryDirectory() as tmp:
        path = compress.export_onnx(checkpoint.model.eval(), Path(tmp) / "m.onnx",
                                    checkpoint.input_size)
        on_cpu = compress.RunnerOptions(provider="cpu")
        for rotate in (False, True):
            for _ in range(args.rounds):
                runners = [compress.open_model(path, on_cpu).runner for _ in range(args.copies)]
                ratios = compress.time_in_turn(runners, checkpoint.input_size,
                                               rotate=rotate).ratios
                print(f"{'rotated' if rotate else 'fixed order'}: "
                      + " ".join(f"{r:.3f}" for r in ratios[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The teacher's forward in a distilling step: under torch.no_grad against
torch.inference_mode (which also skips autograd's version counters and view tracking),
channels-last on the CPU as fit() runs it. The two are timed interleaved, `--steps` times
each; prints the median milliseconds of each, their ratio, and whether the outputs are
identical (they must be: the mode may change the cost, never the targets).

    python benchmarks/teacher_forward.py [TEACHER.safetensors] [--batch 64] [--steps 12]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import compress

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "checkpoints" / "mnv3_trashnet.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher", nargs="?", default=str(BASELINE))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    checkpoint = compress.load_checkpoint(args.teacher)
    teacher = checkpoint.model.eval().to(memory_format=torch.channels_last)
    size = checkpoint.input_size
    images = torch.randn(args.batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    modes = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}
    outputs, times = {}, {name: [] for name in modes}
    for step in range(args.steps + 1):  # the first of each warms up, not counted
        order = list(modes) if step % 2 else list(modes)[::-1]
        for name in order:
            with modes[name]():
                started = time.perf_counter()
                outputs[name] = teacher(images)
                seconds = time.perf_counter() - started
            if step:
                times[name].append(seconds * 1000)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"{name}: median {median:.1f} ms over {len(times[name])} forwards of "
              f"{args.batch} images at {size} px")
    print(f"no_grad / inference_mode: {medians['no_grad'] / medians['inference_mode']:.3f}x; "
          f"identical outputs: {torch.equal(outputs['no_grad'], outputs['inference_mode'])}")


if __name__ == "__main__":
    main()

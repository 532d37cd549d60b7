"""One fine-tuning step on the CPU, contiguous (NCHW) against channels-last (NHWC) tensors.

A step as `compress.training.engine.fit` takes it with distillation: the student's forward and
backward on a batch, plus the teacher's forward. The two layouts are timed interleaved
(one step of each, in turn, `--steps` times) so that the machine's drift hits both alike;
prints the median seconds per step of each and their ratio. fit() trains channels-last on
the CPU because of this figure (`compress.training.loop.training_memory_format`).

    python benchmarks/train_speed.py [STUDENT.safetensors] [--teacher BASELINE.safetensors]
        [--batch 64] [--steps 10]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch

import compress

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "checkpoints" / "mnv3_trashnet.safetensors"


def step_seconds(student: torch.nn.Module, teacher: torch.nn.Module | None,
                 images: torch.Tensor, labels: torch.Tensor) -> float:
    student.zero_grad(set_to_none=True)
    started = time.perf_counter()
    if teacher is not None:
        with torch.no_grad():
            teacher(images)
    loss = torch.nn.functional.cross_entropy(student(images), labels)
    loss.backward()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("student", nargs="?", default=str(BASELINE),
                        help="the model being fine-tuned [default: the shipped baseline]")
    parser.add_argument("--teacher", default=str(BASELINE),
                        help="distillation teacher; 'none' for plain training")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per layout")
    args = parser.parse_args()

    student = compress.load_checkpoint(args.student)
    teacher = None if args.teacher == "none" else \
        compress.load_checkpoint(args.teacher).model.eval()
    size = student.input_size
    images = torch.randn(args.batch, 3, size, size)
    labels = torch.randint(0, len(student.classes), (args.batch,))
    layouts = {}
    for name, memory_format in (("contiguous", torch.contiguous_format),
                                ("channels_last", torch.channels_last)):
        layouts[name] = (copy.deepcopy(student.model).train().to(memory_format=memory_format),
                         None if teacher is None
                         else copy.deepcopy(teacher).to(memory_format=memory_format),
                         images.contiguous(memory_format=memory_format))
    times: dict[str, list[float]] = {name: [] for name in layouts}
    for step in range(args.steps + 1):  # the first step of each warms up, not counted
        for name, (model, teach, batch) in layouts.items():
            seconds = step_seconds(model, teach, batch, labels)
            if step:
                times[name].append(seconds)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{Path(args.student).name}, batch {args.batch}, {size} px, "
          f"{torch.get_num_threads()} threads, teacher: {'none' if teacher is None else 'yes'}")
    for name, median in medians.items():
        print(f"  {name:<14} {median:.3f} s per step (median of {args.steps})")
    print(f"  channels-last speed-up: {medians['contiguous'] / medians['channels_last']:.2f}x")


if __name__ == "__main__":
    main()

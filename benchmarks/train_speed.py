"""One fine-tuning step, contiguous (NCHW) against channels-last (NHWC) tensors, on the CPU
or (`--device cuda`) on a GPU with mixed precision (FP16 autocast, as fit() trains there).

A step as `compress.training.engine.fit` takes it with distillation: the student's forward and
backward on a batch, plus the teacher's forward. The two layouts are timed interleaved
(one step of each, in turn, `--steps` times) so that the machine's drift hits both alike;
prints the median seconds per step of each, images per second and their ratio. fit() trains
channels-last on the CPU because of this figure (`compress.training.loop.
training_memory_format`); on CUDA it trains contiguous until this figure says otherwise.

    python benchmarks/train_speed.py [STUDENT.safetensors] [--teacher BASELINE.safetensors]
        [--batch 64] [--steps 10] [--device cuda] [--json]

Reproduces: channels-last training steps 1.77-1.89x faster than contiguous ones on the CPU
(benchmarks/RESULTS.md, "Training speed", history of 2026-11-23).
Run time on the 2-core VM: not timed (its recorded steps took 0.3-0.9 s each).
Output: the median seconds per step of each layout, images/s and their ratio on stdout
(--json: one JSON line).
"""

from __future__ import annotations

import argparse
import copy
import json
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
    cuda = images.device.type == "cuda"
    started = time.perf_counter()
    with torch.autocast(images.device.type, dtype=torch.float16, enabled=cuda):
        if teacher is not None:
            with torch.no_grad():
                teacher(images)
        loss = torch.nn.functional.cross_entropy(student(images), labels)
    loss.backward()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("student", nargs="?", default=str(BASELINE),
                        help="the model being fine-tuned [default: the shipped baseline]")
    parser.add_argument("--teacher", default=str(BASELINE),
                        help="distillation teacher; 'none' for plain training")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per layout")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (AMP there)")
    parser.add_argument("--json", action="store_true", help="one JSON line instead of text")
    args = parser.parse_args()
    device = torch.device(args.device)

    student = compress.load_checkpoint(args.student)
    teacher = None if args.teacher == "none" else \
        compress.load_checkpoint(args.teacher).model.eval()
    size = student.input_size
    images = torch.randn(args.batch, 3, size, size, device=device)
    labels = torch.randint(0, len(student.classes), (args.batch,), device=device)
    layouts = {}
    for name, memory_format in (("contiguous", torch.contiguous_format),
                                ("channels_last", torch.channels_last)):
        layouts[name] = (copy.deepcopy(student.model).train().to(device,
                                                                   memory_format=memory_format),
                         None if teacher is None
                         else copy.deepcopy(teacher).to(device, memory_format=memory_format),
                         images.contiguous(memory_format=memory_format))
    times: dict[str, list[float]] = {name: [] for name in layouts}
    for step in range(args.steps + 1):  # the first step of each warms up, not counted
        for name, (model, teach, batch) in layouts.items():
            seconds = step_seconds(model, teach, batch, labels)
            if step:
                times[name].append(seconds)
    medians = {name: statistics.median(values) for name, values in times.items()}
    if args.json:
        print(json.dumps({"device": args.device, "batch": args.batch, "input_size": size,
                          "teacher": teacher is not None, "steps": args.steps,
                          "seconds_per_step": medians,
                          "images_per_s": {k: args.batch / v for k, v in medians.items()},
                          "channels_last_speedup": medians["contiguous"]
                          / medians["channels_last"]}))
        return
    print(f"{Path(args.student).name}, {args.device}, batch {args.batch}, {size} px, "
          f"{torch.get_num_threads()} threads, teacher: {'none' if teacher is None else 'yes'}")
    for name, median in medians.items():
        print(f"  {name:<14} {median:.3f} s per step (median of {args.steps}), "
              f"{args.batch / median:.0f} images/s")
    print(f"  channels-last speed-up: {medians['contiguous'] / medians['channels_last']:.2f}x")


if __name__ == "__main__":
    main()

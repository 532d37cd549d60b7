"""A torch model timed the way it would be deployed, on the CPU or on a CUDA GPU.

On a GPU at batch 1 a MobileNet waits on kernel launches, not arithmetic (an H100 ran the
baseline in 4.99 ms eager against 1.5-2.6 ms for this 2-core CPU's ONNX Runtime), so the
deployed form removes what it can of the launch cost:
- FP16 (or bfloat16) weights and activations, channels-last (tensor-core convolutions);
- a CUDA graph captured per input shape on the first call: one replay launches every kernel
  of the model (the static input and output buffers the graph reads and writes are kept);
- the batch handed over in pinned host memory and copied without blocking, the logits copied
  back the same way, one synchronise per call.

One timed call is what a deployed model does per batch: input to the device, the model,
logits back to the host (ONNX Runtime's CUDA provider, fed numpy, does the same copies).
`prepare` (untimed) converts the float32 batch to the model's precision in pinned memory.
`launch_floor` gives a runner of a one-kernel model with the same copies: the time no model
can beat on this device, reported next to the model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from compress.errors import UserError

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
GRAPH_WARMUP_CALLS = 3  # eager calls on a side stream before capture (cuDNN picks its kernels)


def deployed_precision(device: str | torch.device) -> str:
    """FP16 on a GPU (tensor cores); float32 on a CPU, which has no fast FP16 kernels."""
    return "fp16" if torch.device(device).type == "cuda" else "fp32"


@dataclass
class _CapturedGraph:
    graph: Any  # torch.cuda.CUDAGraph
    static_input: torch.Tensor  # on the device: copy a batch here, then replay
    static_output: torch.Tensor  # on the device: what the replay writes
    host_output: torch.Tensor  # pinned host memory the logits are copied back to


@dataclass
class TorchRunner:
    """A torch model in eager mode, compiled (torch.compile), or replayed as CUDA graphs."""

    model: nn.Module
    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False
    graphs: bool = False
    compiled: bool = False
    note: str | None = None
    _captured: dict[tuple[int, ...], _CapturedGraph] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, model: nn.Module, device: str | torch.device = "cpu",
             compile_model: bool = False, precision: str | None = None,
             channels_last: bool | None = None, graphs: bool | None = None) -> "TorchRunner":
        """The deployed form by default: on CUDA FP16, channels-last and CUDA graphs; on the
        CPU float32 eager (FP16 has no fast CPU kernels). Moves `model` to the device."""
        device = torch.device(device)
        cuda = device.type == "cuda"
        if cuda and not torch.cuda.is_available():
            raise UserError("device cuda: torch sees no CUDA GPU on this machine")
        precision = precision or deployed_precision(device)
        if precision not in PRECISIONS:
            raise UserError(f"unknown precision {precision!r}; choose one of "
                            + ", ".join(PRECISIONS))
        graphs = cuda if graphs is None else graphs
        if graphs and not cuda:
            raise UserError("CUDA graphs need a CUDA device (--device cuda)")
        channels_last = cuda if channels_last is None else channels_last
        model = model.eval().to(device=device, dtype=PRECISIONS[precision])
        if channels_last:
            # The input stays NCHW: a convolution with channels-last weights gives a
            # channels-last output, so the layout carries on from the first layer.
            model = model.to(memory_format=torch.channels_last)
        if compile_model:
            model = torch.compile(model)
        return cls(model, device, precision, channels_last, graphs, compile_model)

    @property
    def provider(self) -> str:
        """What runs, e.g. torch-cuda-fp16-channels-last-graphs or torch-cpu-fp32-eager."""
        parts = ["torch", self.device.type, self.precision]
        if self.channels_last:
            parts.append("channels-last")
        parts.append("graphs" if self.graphs else "compile" if self.compiled else "eager")
        return "-".join(parts)

    @property
    def dtype(self) -> torch.dtype:
        return PRECISIONS[self.precision]

    def prepare(self, images: np.ndarray) -> torch.Tensor:
        """The batch in the model's precision, in pinned host memory on CUDA (not timed)."""
        images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        host = torch.empty(images.shape, dtype=self.dtype,
                           pin_memory=self.device.type == "cuda")
        return host.copy_(images)  # one copy, converting

    def __call__(self, host_batch: torch.Tensor) -> torch.Tensor:
        """Logits on the host for one prepared batch; returns when they are there."""
        with torch.no_grad():
            if self.graphs:
                return self._replay(host_batch)
            logits = self.model(host_batch.to(self.device, non_blocking=True))
            return logits.cpu()  # on CUDA this waits for the model

    def _replay(self, host_batch: torch.Tensor) -> torch.Tensor:
        captured = self._captured.get(tuple(host_batch.shape))
        if captured is None:
            captured = self._captured[tuple(host_batch.shape)] = self._capture(host_batch)
        captured.static_input.copy_(host_batch, non_blocking=True)
        captured.graph.replay()
        captured.host_output.copy_(captured.static_output, non_blocking=True)
        torch.cuda.current_stream(self.device).synchronize()
        return captured.host_output.clone()  # the buffer is the next call's

    def _capture(self, host_batch: torch.Tensor) -> _CapturedGraph:
        """torch's recipe for capturing a model: warm-up calls on a side stream, then one
        call recorded into a graph that reads and writes fixed device buffers."""
        static_input = torch.empty_like(host_batch, device=self.device)
        static_input.copy_(host_batch)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_CALLS):
                self.model(static_input)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_output = self.model(static_input)
        host_output = torch.empty(static_output.shape, dtype=static_output.dtype,
                                  pin_memory=True)
        return _CapturedGraph(graph, static_input, static_output, host_output)


class OneKernel(nn.Module):
    """A model of one small kernel with a classifier's output shape: timed with the same
    copies, graph and synchronise as a real model, it shows the launch floor."""

    def __init__(self, classes: int):
        super().__init__()
        self.classes = classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)[:, :self.classes] * 1


def launch_floor(device: str | torch.device, classes: int, precision: str | None = None,
                 graphs: bool | None = None) -> TorchRunner:
    """A runner of OneKernel with the given (or the deployed) precision and graph setting."""
    return TorchRunner.open(OneKernel(classes), device, precision=precision,
                            channels_last=False, graphs=graphs)


def launch_floor_ms(device: str | torch.device, classes: int, input_size: int,
                    precision: str | None = None, graphs: bool | None = None, warmup: int = 20,
                    runs: int = 100) -> float:
    """Batch-1 median latency of `launch_floor`'s runner, timed as models are."""
    from compress.measure.latency import measure_latency

    runner = launch_floor(device, classes, precision, graphs)
    return measure_latency(runner, input_size, 1, warmup, runs).median_ms


def matmul_peak_gflops(device: str | torch.device, precision: str = "fp32",
                       size: int | None = None, repeats: int = 10) -> float:
    """Best GFLOP/s of a size x size matrix product in torch on `device` (tensor cores at
    FP16 / bfloat16 on a GPU): the arithmetic ceiling a model's achieved GFLOP/s is read
    against. `size`: 4096 on a GPU, 1024 on a CPU (2 GFLOP a product) by default."""
    import time

    device = torch.device(device)
    size = size or (4096 if device.type == "cuda" else 1024)
    a = torch.randn(size, size, device=device).to(PRECISIONS[precision])
    b = torch.randn(size, size, device=device).to(PRECISIONS[precision])
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats + 1):  # the first one warms up (library load, clocks)
            start = time.perf_counter()
            (a @ b).sum().item()  # .item() waits for the GPU
            best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9

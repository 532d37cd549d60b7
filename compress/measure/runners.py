"""What gets timed in ONNX Runtime: a session on an execution provider (torch models:
compress.measure.torch_runner).

A runner turns a float32 NCHW batch into the form its engine wants (`prepare`, not timed)
and runs it synchronously (`__call__`, timed). `provider` names what really ran: ONNX
Runtime silently falls back to the CPU when a GPU provider fails to load, so the provider
is read back from the session, and `note` says when it differs from what was asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compress.errors import UserError, first_line

PROVIDER_CHOICES = ("auto", "cpu", "cuda", "tensorrt")
_ORT_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
              "tensorrt": "TensorrtExecutionProvider"}
_FALLBACK_CHAIN = {"cpu": ["cpu"], "cuda": ["cuda", "cpu"], "tensorrt": ["tensorrt", "cuda", "cpu"]}
GPU_HINT = "install onnxruntime-gpu (pip install -e '.[gpu]') on a machine with CUDA"


def provider_for_device(device: str) -> str:
    """The provider matching a torch device string ("cuda:0" -> "cuda")."""
    return "cuda" if str(device).startswith("cuda") else "cpu"


def session_options(threads: int | None, profile_prefix: str | None = None):
    """The options every session here runs with; `profile_prefix`: ONNX Runtime's profiler
    on, its JSON written under that prefix (compress.measure.op_profile)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.inter_op_num_threads = 1  # one model, one graph: no parallel branches to run
    if threads:
        options.intra_op_num_threads = threads
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


def ort_load_errors() -> tuple[type[Exception], ...]:
    """What ONNX Runtime raises for a file it cannot load (not protobuf, an invalid graph, an
    op it lacks): its own types, none of them a subclass of a Python error."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return (state.Fail, state.InvalidArgument, state.InvalidGraph, state.InvalidProtobuf,
            state.NotImplemented, state.RuntimeException)


def _session_on(model: str | bytes, provider: str, threads: int | None,
                profile_prefix: str | None = None):
    import onnxruntime as ort

    chain = [_ORT_NAMES[p] for p in _FALLBACK_CHAIN[provider]]
    return ort.InferenceSession(model, session_options(threads, profile_prefix),
                                providers=chain)


def open_session(model: str | Path | bytes, provider: str = "cpu",
                 threads: int | None = None, profile_prefix: str | None = None
                 ) -> tuple[Any, str | None]:
    """An ONNX Runtime session on `provider` (auto|cpu|cuda|tensorrt) and a note when the
    provider really used is not the one asked for (None when it is)."""
    import onnxruntime as ort

    if provider not in PROVIDER_CHOICES:
        raise UserError(f"unknown provider {provider!r}; choose one of "
                        + ", ".join(PROVIDER_CHOICES))
    model = model if isinstance(model, bytes) else str(model)
    available = ort.get_available_providers()
    if provider == "auto":
        failures = []
        for candidate in ("tensorrt", "cuda", "cpu"):
            if _ORT_NAMES[candidate] not in available:
                continue
            try:
                session = _session_on(model, candidate, threads, profile_prefix)
            except Exception as exc:  # a GPU provider whose libraries fail to load
                if candidate == "cpu":  # the file is at fault, not a provider: as for "cpu"
                    raise
                failures.append(f"{_ORT_NAMES[candidate]} failed ({first_line(exc)})")
                continue
            if session.get_providers()[0] == _ORT_NAMES[candidate]:
                used = session.get_providers()[0]
                return session, "provider auto: " + "; ".join(failures + [f"using {used}"])
            failures.append(f"{_ORT_NAMES[candidate]} did not load")
        raise UserError("no ONNX Runtime execution provider could load the model")
    wanted = _ORT_NAMES[provider]
    if wanted not in available:
        session = _session_on(model, "cpu", threads, profile_prefix)
        return session, (f"{wanted} is not available in this onnxruntime build ({GPU_HINT}); "
                         f"measured on {session.get_providers()[0]} instead")
    session = _session_on(model, provider, threads, profile_prefix)
    used = session.get_providers()[0]
    if used != wanted:
        return session, (f"{wanted} failed to load (CUDA/cuDNN/TensorRT libraries missing or "
                         f"incompatible?); ONNX Runtime fell back to {used}")
    return session, None


def open_onnx_runner(path: str | Path, runtime: str = "onnxruntime", provider: str = "cpu",
                     threads: int | None = None) -> Any:
    """An ONNX file opened in `runtime` (onnxruntime on `provider`, or openvino)."""
    if runtime == "openvino":
        from compress.measure.openvino_runner import OvRunner

        return OvRunner.open(path, threads)
    return OrtRunner.open(path, provider, threads)


@dataclass
class OrtRunner:
    session: Any
    note: str | None = None

    @classmethod
    def open(cls, path: str | Path, provider: str = "cpu", threads: int | None = None
             ) -> "OrtRunner":
        return cls(*open_session(path, provider, threads))

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    @property
    def provider_key(self) -> str:
        """The provider that really runs, as PROVIDER_CHOICES name it (cpu, cuda, tensorrt)."""
        return {name: key for key, name in _ORT_NAMES.items()}.get(self.provider, "cpu")

    def input_size(self) -> int | None:
        """The model's square input size when its ONNX input shape fixes it."""
        height, width = self.session.get_inputs()[0].shape[2:4]
        return height if isinstance(height, int) and height == width else None

    def fixed_batch(self) -> int | None:
        """The batch size the ONNX input shape fixes, if it fixes one."""
        batch = self.session.get_inputs()[0].shape[0]
        return batch if isinstance(batch, int) else None

    def prepare(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return {self.session.get_inputs()[0].name: images.astype(np.float32)}

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, feed)[0]

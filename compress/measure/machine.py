"""What a latency figure was measured on: CPU, cores, GPU and driver, library versions,
and a measured float32 peak (GFLOP/s) of the device, to put a model's speed in proportion."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from typing import Any

import numpy as np

PEAK_MATMUL_SIZE = 1024  # 2 x 1024^3 = 2.1 GFLOP per run


def usable_cores() -> int:
    """Cores this process may run on (respects taskset / cgroup CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpuinfo_field(name: str) -> str | None:
    """The value of the first `name` line of /proc/cpuinfo (Linux); None where it cannot be
    read. The one reader of that file: the CPU's name and its feature flags come from here."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, sep, value = line.partition(":")
                if sep and key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return cpuinfo_field("model name") or platform.processor() or platform.machine()


def gpu_description() -> str | None:
    """GPU name and driver version, or None without a CUDA GPU."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        name = torch.cuda.get_device_name(0)
    except (ImportError, RuntimeError):  # no torch, or a CUDA that fails to initialise
        return None
    driver = None
    if shutil.which("nvidia-smi"):
        result = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                                 "--format=csv,noheader"], capture_output=True, text=True)
        driver = result.stdout.strip().splitlines()[0] if result.returncode == 0 else None
    return f"{name}, driver {driver or 'unknown'}"


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from compress import __version__

    # compress by its own attribute: the distribution name differs (compress-vision), and a
    # package called "compress" on PyPI is someone else's.
    versions = {"python": platform.python_version(), "compress": __version__}
    for package in ("onnxruntime", "onnxruntime-gpu", "openvino", "torch", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return versions


def machine_info(threads: int) -> dict[str, Any]:
    return {"cpu": cpu_model(), "cores_usable": usable_cores(), "threads": threads,
            "gpu": gpu_description(), "versions": library_versions()}


def format_machine(info: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    gpu = info["gpu"] or "none"
    return (f"machine: {info['cpu']}, {info['threads']} of {info['cores_usable']} usable cores; "
            f"GPU: {gpu}\nversions: {versions}")


def matmul_model(size: int) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((size, size)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "peak",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def peak_gflops(provider: str = "cpu", threads: int | None = None, repeats: int = 10,
                size: int = PEAK_MATMUL_SIZE) -> float:
    """Best GFLOP/s of a large float32 MatMul in ONNX Runtime on the same provider and
    threads as the benchmark: what this device reaches on dense float32 work."""
    from compress.measure.runners import open_session

    session, _ = open_session(matmul_model(size), provider, threads)
    x = np.random.default_rng(1).standard_normal((size, size)).astype(np.float32)
    session.run(None, {"x": x})
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {"x": x})
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9

"""Which runtime and device time a model: ONNX Runtime (an ONNX file on an execution
provider), OpenVINO (an ONNX file on its CPU plugin: compress.measure.openvino_runner) or
torch (a checkpoint, in its deployed form: compress.measure.torch_runner).

`compress bench` and `compress predict` follow the user's --runtime and --device; a
recipe's stages follow `device` and `bench.runtime`. On CUDA, `auto` picks ONNX Runtime
where onnxruntime-gpu is installed and its CUDA provider loads, else the torch CUDA runner,
and says why. A speed-up is only ever measured with both models in one runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from compress.errors import UserError

RUNTIMES = ("auto", "onnxruntime", "openvino", "torch")
ONNX_RUNTIMES = ("onnxruntime", "openvino")  # what runs an ONNX file
DEVICES = ("auto", "cpu", "cuda")
GPU_PROVIDERS = ("cuda", "tensorrt")
TORCH_CUDA_FORM = "FP16, channels-last, CUDA graphs"


@dataclass(frozen=True)
class RuntimeChoice:
    runtime: str  # onnxruntime | openvino | torch
    device: str  # cpu | cuda
    provider: str | None = None  # ONNX Runtime's execution provider (auto|cpu|cuda|tensorrt)
    note: str | None = None  # why, where it is not what was asked for or not obvious


def _torch_has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def onnxruntime_cuda_problem() -> str | None:
    """None where ONNX Runtime's CUDA provider is installed and loads a model, else why not."""
    import onnxruntime as ort

    from compress.measure.machine import matmul_model
    from compress.measure.runners import GPU_HINT, open_session

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (f"onnxruntime {ort.__version__} has no CUDA provider ({GPU_HINT})")
    return open_session(matmul_model(8), "cuda")[1]


def model_runtime(path_suffix: str) -> str:
    """The runtime a model file runs in by itself: ONNX files in ONNX Runtime, checkpoints
    in torch."""
    return "onnxruntime" if path_suffix == ".onnx" else "torch"


def choose_bench_runtime(path_suffix: str, runtime: str = "auto", device: str | None = None,
                         provider: str | None = None,
                         torch_has_cuda: Callable[[], bool] = _torch_has_cuda
                         ) -> RuntimeChoice:
    """`compress bench` / `predict`: the runtime for a model file and the user's options.
    `device` None follows `provider` (cuda, tensorrt: the GPU), else the CPU; `provider`
    None follows the device. A checkpoint asked to run in ONNX Runtime is exported first
    (the caller's job); an ONNX file cannot run in torch. OpenVINO runs on the CPU."""
    if runtime not in RUNTIMES:
        raise UserError(f"unknown runtime {runtime!r}; choose one of " + ", ".join(RUNTIMES))
    if device is not None and device not in DEVICES:
        raise UserError(f"unknown device {device!r}; choose one of " + ", ".join(DEVICES))
    runtime = model_runtime(path_suffix) if runtime == "auto" else runtime
    if runtime == "torch" and path_suffix == ".onnx":
        raise UserError("--runtime torch runs checkpoints; an ONNX file runs in onnxruntime "
                        "(give the checkpoint it was exported from)")
    if runtime == "openvino":
        return _openvino_on_cpu(device, provider, "--device", "--provider")
    if device is None:
        device = "cuda" if provider in GPU_PROVIDERS else "auto" if provider == "auto" \
            else "cpu"
    if device == "cpu" and provider in GPU_PROVIDERS:
        raise UserError(f"--device cpu and --provider {provider} contradict each other")
    if device == "auto":
        device = "cuda" if torch_has_cuda() else "cpu"
    if runtime == "torch":
        if provider == "tensorrt":
            raise UserError("--provider tensorrt is ONNX Runtime's; --runtime torch runs the "
                            "checkpoint in torch (give --runtime onnxruntime to export it)")
        if device == "cuda" and not torch_has_cuda():
            raise UserError("--device cuda: torch sees no CUDA GPU on this machine")
        return RuntimeChoice("torch", device)
    if provider is None:
        provider = device
    return RuntimeChoice("onnxruntime", device, provider)


def _openvino_on_cpu(device: str | None, provider: str | None, device_option: str,
                     provider_option: str) -> RuntimeChoice:
    from compress.measure.openvino_runner import openvino_problem

    if device not in (None, "auto", "cpu"):
        raise UserError(f"OpenVINO runs here on the CPU only; {device_option} {device} needs "
                        "--runtime onnxruntime or torch")
    if provider not in (None, "cpu"):
        raise UserError(f"{provider_option} {provider} is ONNX Runtime's; OpenVINO here runs "
                        "on its CPU plugin")
    problem = openvino_problem()
    if problem:
        raise UserError(problem)
    return RuntimeChoice("openvino", "cpu")


def choose_stage_runtime(device: str, runtime: str = "auto",
                         onnxruntime_problem: Callable[[], str | None] = onnxruntime_cuda_problem
                         ) -> RuntimeChoice:
    """A recipe's stages: `device` is the run's torch device (cpu, cuda[:N]), `runtime` the
    recipe's bench.runtime. On CUDA, auto takes ONNX Runtime's CUDA provider where it
    loads, else the torch CUDA runner, and the note says which and why."""
    cuda = device.startswith("cuda")
    if runtime not in RUNTIMES:
        raise UserError(f"bench.runtime {runtime!r}: choose one of " + ", ".join(RUNTIMES))
    if runtime == "openvino":
        if cuda:
            raise UserError(f"bench.runtime openvino times on the CPU, but the run's device "
                            f"is {device}: set device: cpu, or bench.runtime auto")
        return _openvino_on_cpu("cpu", None, "device", "provider")
    if not cuda:
        return RuntimeChoice("torch", "cpu") if runtime == "torch" else \
            RuntimeChoice("onnxruntime", "cpu", "cpu")
    ort_on_cpu = ("; the ONNX files that stages time among themselves (plan, quantize, "
                  "FP16 export) run in ONNX Runtime on the CPU")
    if runtime == "torch":
        return RuntimeChoice("torch", device, note=f"stages timed in torch on {device} "
                             f"({TORCH_CUDA_FORM}){ort_on_cpu}")
    problem = onnxruntime_problem()
    if problem is None:
        return RuntimeChoice("onnxruntime", device, "cuda",
                             note=f"stages timed in ONNX Runtime's CUDA provider on {device}")
    if runtime == "onnxruntime":
        raise UserError(f"bench.runtime onnxruntime on {device}: {problem}; set "
                        "bench.runtime to auto or torch to time the stages in torch")
    return RuntimeChoice("torch", device, note=f"stages timed in torch on {device} "
                         f"({TORCH_CUDA_FORM}), because {problem}{ort_on_cpu}")


@dataclass(frozen=True)
class RunnerOptions:
    """How the user asked for a model to be run (bench, predict, inspect, retime)."""

    runtime: str = "auto"
    device: str | None = None  # None: follows the provider, else the CPU
    provider: str | None = None  # ONNX Runtime's; None: follows the device
    threads: int | None = None
    precision: str | None = None  # torch: fp32 | fp16 | bf16 (None: fp16 on CUDA, else fp32)
    graphs: bool | None = None  # torch on CUDA: CUDA graphs (None: on)
    compile_model: bool = False  # torch: torch.compile

    def check_for(self, choice: RuntimeChoice) -> None:
        """Options that the chosen runtime cannot honour are an error, not ignored."""
        if choice.runtime in ONNX_RUNTIMES:
            for name, given in (("--compile", self.compile_model),
                                ("--precision", self.precision is not None),
                                ("--graphs/--no-graphs", self.graphs is not None)):
                if given:
                    raise UserError(f"{name} applies to --runtime torch; an ONNX file's "
                                    "precision is fixed when it is exported (compress export "
                                    "--fp16, compress quantize)")

"""compress: a model-compression pipeline for small vision classifiers.

The public Python API is the names in `__all__`:

    import compress
    records = compress.run("recipes/smoke.yaml", out="runs/smoke", data="/nonexistent")

They resolve on first use (PEP 562 `__getattr__`), so `import compress` stays cheap: the CLI
imports `compress.__version__` before every command, and torch costs seconds to import.

Beside running recipes and reading their runs, the API gives what scripts that measure
models (benchmarks/) build on:
- opening a model file to time it: `open_model(path, RunnerOptions(...))` (an ONNX file in
  ONNX Runtime or OpenVINO, a checkpoint in torch), `TorchRunner` for a model in memory, and
  what a device lacks: `onnxruntime_cuda_problem`, `openvino_problem`;
- timing runners: `measure_latency`, `compare_latency` (two, interleaved), `time_in_turn`
  (several, block by block), the raw blocks (`blocks_in_turn`: a `Blocks` of every cycle,
  `.kept()` those timed while no other process used the cores; `per_cycle_ratio`), and
  `time_files_in_turn` (ONNX files in a process of their own, as a run times its stages);
  the device's bounds: `launch_floor`, `matmul_peak_gflops`;
- counting and predicting: `count_macs`, `list_images`, `predict_files`, `usable_cores`;
- changing a model by hand: `convert_fp16` (an ONNX file), and the cuts a plan chooses
  among: `candidate_options`, `apply_options`;
- training an architecture search's designs again: `arch_search_trials`,
  `train_arch_design`.
"""

from importlib import import_module as _import_module

__version__ = "0.1.0"

# Public name -> the module that defines it. `compress.stages` rather than its `registry` and
# `base` modules: importing the package registers the built-in stages, so `list_stages()`
# and `create_stage()` know them all.
_EXPORTS = {
    "run": "compress.api",
    "load_recipe": "compress.recipe.loading",
    "Recipe": "compress.recipe.schema",
    "StageRecord": "compress.pipeline.runstore",
    "read_run": "compress.pipeline.runstore",
    "apply_override": "compress.recipe.overrides",
    "Checkpoint": "compress.checkpoint",
    "load_checkpoint": "compress.checkpoint",
    "save_checkpoint": "compress.checkpoint",
    "list_stages": "compress.stages",
    "register_stage": "compress.stages",
    "create_stage": "compress.stages",
    "Stage": "compress.stages",
    "StageConfig": "compress.stages",
    "StageContext": "compress.stages",
    "StageOutput": "compress.stages",
    "StageResult": "compress.stages",
    "StageStatus": "compress.stages",
    "export_onnx": "compress.ops.onnx_export",
    "squeeze_excite_paths": "compress.ops.blocks",
    "replace_with_identity": "compress.ops.blocks",
    "time_interleaved": "compress.tools.retime",
    "retime": "compress.tools.retime",
    "UserError": "compress.errors",
    "StageFailed": "compress.errors",
    # Measuring models (see the module's docstring).
    "open_model": "compress.tools.bench",
    "RunnerOptions": "compress.measure.runtime",
    "TorchRunner": "compress.measure.torch_runner",
    "onnxruntime_cuda_problem": "compress.measure.runtime",
    "openvino_problem": "compress.measure.openvino_runner",
    "measure_latency": "compress.measure.latency",
    "compare_latency": "compress.measure.latency",
    "time_in_turn": "compress.measure.latency",
    "blocks_in_turn": "compress.measure.latency",
    "per_cycle_ratio": "compress.measure.latency",
    "time_files_in_turn": "compress.api",
    "launch_floor": "compress.measure.torch_runner",
    "matmul_peak_gflops": "compress.measure.torch_runner",
    "count_macs": "compress.measure.macs",
    "list_images": "compress.measure.end_to_end",
    "predict_files": "compress.measure.end_to_end",
    "usable_cores": "compress.measure.machine",
    "convert_fp16": "compress.ops.onnx_export",
    "candidate_options": "compress.planning.options",
    "apply_options": "compress.planning.options",
    "arch_search_trials": "compress.api",
    "train_arch_design": "compress.api",
}

__all__ = [  # the public API; a test keeps it equal to _EXPORTS plus __version__
    "Checkpoint", "Recipe", "RunnerOptions", "Stage", "StageConfig", "StageContext",
    "StageFailed", "StageOutput", "StageRecord", "StageResult", "StageStatus", "TorchRunner",
    "UserError", "__version__", "apply_options", "apply_override", "arch_search_trials",
    "blocks_in_turn",
    "candidate_options", "compare_latency", "convert_fp16", "count_macs", "create_stage",
    "export_onnx", "launch_floor", "list_images", "list_stages", "load_checkpoint",
    "load_recipe", "matmul_peak_gflops", "measure_latency", "onnxruntime_cuda_problem",
    "open_model", "openvino_problem", "per_cycle_ratio", "predict_files", "read_run",
    "register_stage", "replace_with_identity", "retime", "run", "save_checkpoint",
    "squeeze_excite_paths", "time_files_in_turn", "time_in_turn", "time_interleaved",
    "train_arch_design", "usable_cores",
]


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'compress' has no attribute {name!r}")
    value = getattr(_import_module(_EXPORTS[name]), name)
    globals()[name] = value  # resolved once; later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

"""compress: a model-compression pipeline for small vision classifiers.

The public Python API is the names in `__all__`:

    import compress
    records = compress.run("recipes/smoke.yaml", out="runs/smoke", data="/nonexistent")

They resolve on first use (PEP 562 `__getattr__`), so `import compress` stays cheap: the CLI
imports `compress.__version__` before every command, and torch costs seconds to import.
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
}

__all__ = [  # the public API; a test keeps it equal to _EXPORTS plus __version__
    "Checkpoint", "Recipe", "Stage", "StageConfig", "StageContext", "StageFailed", "StageOutput",
    "StageRecord", "StageResult", "StageStatus", "UserError", "__version__", "apply_override",
    "create_stage", "export_onnx", "list_stages", "load_checkpoint", "load_recipe", "read_run",
    "register_stage", "replace_with_identity", "retime", "run", "save_checkpoint",
    "squeeze_excite_paths", "time_interleaved",
]


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'compress' has no attribute {name!r}")
    value = getattr(_import_module(_EXPORTS[name]), name)
    globals()[name] = value  # resolved once; later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

"""Stages: the contract (`base`), the registry, and one thin module per stage kind.

Importing this package registers the built-in stages. Stage modules import
`compress.stages.base` and `compress.stages.registry`, never this package, so that the
registry never imports the stages it holds (no import circle).
"""

# The built-in stages register themselves when imported.
from compress.stages import decompose, drop, export, finetune, plan, prune, quantize, resize  # noqa: E402,F401,I001
from compress.stages.base import (Stage, StageConfig, StageContext, StageOutput, StageResult,
                                  StageStatus)
from compress.stages.registry import create_stage, list_stages, register_stage, stage_class

__all__ = ["Stage", "StageConfig", "StageContext", "StageOutput", "StageResult", "StageStatus",
           "create_stage", "list_stages", "register_stage", "stage_class"]

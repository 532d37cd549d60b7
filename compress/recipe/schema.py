"""The recipe, typed: sections with their defaults, unknown keys rejected.

    checkpoint: checkpoints/mnv3_trashnet.safetensors
    teacher: null            # optional: another checkpoint to distil from / plan against
    data: {root: ../shared/data/trashnet, split: val}
    device: auto
    bench: {batch_sizes: [1, 8], warmup: 10, runs: 50}
    score: {formula: time}
    stages:
      - prune: {importance: l2, target_macs: 0.5}
      - finetune: {epochs: 5}
Relative paths are relative to the folder `compress` runs in.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from compress import defaults
from compress.checkpoint import Checkpoint, load_checkpoint, load_teacher
from compress.data.config import TrainPolicy
from compress.recipe.search_space import SearchSection
from compress.stages.base import Stage, reject_bool_numbers
from compress.stages.registry import create_stage


class InvalidStageOptions(ValueError):
    """A stage's options failed their typed config: which stage, and pydantic's error."""

    def __init__(self, index: int, name: str, error: ValidationError):
        super().__init__(f"stages.{index}.{name}: {error}")
        self.index, self.name, self.error = index, name, error


# Stages after which accuracy drops until a fine-tune follows.
NEEDS_RECOVERY = ("prune", "drop", "decompose", "resize")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        return reject_bool_numbers(cls, data)


class DataSection(_Strict):
    root: str = "../shared/data/trashnet"
    split: str = Field("val", description="split that F1 and accuracy are measured on")
    batch_size: int = Field(defaults.BATCH_SIZE, ge=1)
    num_workers: int = Field(defaults.NUM_WORKERS, ge=0)
    aug_train: TrainPolicy = defaults.AUG_TRAIN
    n_select: int = Field(2, ge=0)
    level: int | None = Field(9, ge=0, le=30)
    cache: Literal["auto", "ram", "disk", "stream"] = Field(
        "auto", description="where decoded training images are kept: auto, ram, disk or stream "
        "(the docs' \"At scale\" page)")
    new_held_out: bool = Field(
        False, description="draw a new held-out split from this folder's train images even "
        "where part of the one the checkpoint records is there (where none is, one is drawn "
        "anyway)")

    def augmentation(self) -> tuple[str, dict[str, Any]]:
        """The training augmentation policy and its parameters, as the data YAML names them."""
        return self.aug_train, {"n_select": self.n_select, "level": self.level}


class BenchSection(_Strict):
    runtime: Literal["auto", "onnxruntime", "openvino", "torch"] = Field(
        "auto", description="what every stage is timed in: auto is ONNX Runtime on the CPU; "
        "on CUDA its CUDA provider where onnxruntime-gpu loads, else torch (FP16, "
        "channels-last, CUDA graphs); openvino: OpenVINO's CPU plugin (the openvino extra)")
    batch_sizes: list[int] = Field(default_factory=lambda: [1, 8])
    warmup: int = Field(10, ge=0, description="untimed runs before timing, and at least "
                        "half a second of them; 0: no warm-up at all (smoke runs, tests: the "
                        "figures then include cold runs)")
    runs: int = Field(50, ge=3)
    threads: int | None = Field(
        None, ge=1, description="intra-op threads of every timing (the plan's too); null: the "
        "runtime's default (ONNX Runtime: one per physical core, with its own thread "
        "affinity), which on a shared VM can move a small model's speed-up between two levels "
        "for minutes at a time; 1 reads steadiest there (docs/latency-plan.md, 'Timing "
        "threads')")
    compare_runtimes: bool = Field(
        True, description="on the CPU, time the final model in every installed runtime "
        "(ONNX Runtime, OpenVINO) in turn and check their classes agree, for the report")

    @field_validator("batch_sizes")
    @classmethod
    def _starts_with_one(cls, value: list[int]) -> list[int]:
        if not value or value[0] != 1 or any(b < 1 for b in value):
            raise ValueError("expected a list of batch sizes starting with 1, e.g. [1, 8]")
        return value


class ScoreSection(_Strict):
    formula: Literal["time", "macs"] = "time"
    time_weight: float = Field(0.5, ge=0)
    f1_slope: float = Field(20.0, gt=0)
    f1_floor: float = Field(0.5, ge=0, le=1)
    f1_floor_term: float = 1.0
    baseline_f1: float | None = Field(None, ge=0, le=1, description="null: the input, measured")
    time: Literal["latency", "end_to_end"] = Field(
        "latency", description="latency: batch-1 model latency; end_to_end: wall time to "
        "decode, preprocess and predict the whole evaluated split at batch 1 (the "
        "competition's submit time)")
    baseline_time_ms: float | None = Field(
        None, gt=0, description="null: the input, measured; in ms per image (latency) or ms "
        "for the whole split (end_to_end)")
    baseline_macs: float | None = Field(None, gt=0, description="null: the input, measured")


class TrackingSection(_Strict):
    to: Literal["none", "mlflow"] = Field(
        "none", description="mlflow: log the run (recipe, per-stage figures, device, report "
        "files) to MLflow (the mlflow extra); --track mlflow sets it")
    uri: str | None = Field(
        None, description="MLflow tracking URI; null: an embedded SQLite store beside the run "
        "folder (RUNS/mlflow.db, files in RUNS/mlartifacts)")
    experiment: str = Field("compress", min_length=1, description="MLflow experiment name")


class Recipe(_Strict):
    checkpoint: str
    teacher: str | None = Field(
        None, description="a checkpoint to distil from (finetune's distill) and, with a "
        "plan's relative_to: teacher, to time against; null: the input checkpoint. Give "
        "the larger model when the input is a small one trained from scratch")
    data: DataSection = Field(default_factory=DataSection)
    device: str = "auto"
    bench: BenchSection = Field(default_factory=BenchSection)
    score: ScoreSection = Field(default_factory=ScoreSection)
    seed: int = defaults.SEED
    stages: list[dict[str, dict[str, Any] | None]] = Field(min_length=1)
    search: SearchSection | None = Field(None, description="compress search: the space")
    tracking: TrackingSection = Field(default_factory=TrackingSection)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value not in ("auto", "cpu") and not value.startswith("cuda"):
            raise ValueError("expected auto, cpu or cuda[:N]")
        return value

    # Built once from `stages` (validated there) and the input checkpoint, loaded once.
    _stage_objects: list[Stage] | None = PrivateAttr(None)
    _input: Checkpoint | None = PrivateAttr(None)
    _teacher: Checkpoint | None = PrivateAttr(None)

    def stage_objects(self) -> list[Stage]:
        """The stages with their typed configs, built (and so validated) once; a bad option
        raises InvalidStageOptions naming the stage."""
        if self._stage_objects is None:
            stages = []
            for index, entry in enumerate(self.stages):
                name, options = stage_entry(entry)
                try:
                    stages.append(create_stage(name, options))
                except ValidationError as exc:
                    raise InvalidStageOptions(index, name, exc) from None
            self._stage_objects = stages
        return self._stage_objects

    def input_checkpoint(self) -> Checkpoint:
        """The input checkpoint, read once; stages must work on a copy of its model."""
        if self._input is None:
            self._input = load_checkpoint(self.checkpoint)
        return self._input

    def teacher_checkpoint(self) -> Checkpoint:
        """The teacher checkpoint (the input's, without a teacher key), read once."""
        if self.teacher is None:
            return self.input_checkpoint()
        if self._teacher is None:
            self._teacher = load_teacher(self.teacher, self.input_checkpoint().classes)
        return self._teacher

    def warnings(self) -> list[str]:
        """Cross-stage rules that a recipe may break at its own risk."""
        names = self.stage_names()
        found = []
        if "quantize" in names[:-1]:
            found.append("warning: quantize is not the last stage: the stages after it work "
                         "on the float32 model and the INT8 file is not carried on")
        for index, name in enumerate(names):
            if name in NEEDS_RECOVERY and "finetune" not in names[index + 1:]:
                found.append(f"warning: stages.{index}.{name} changes the model's weights or "
                             "input size and no finetune follows it to recover the accuracy")
        return found

    def stage_names(self) -> list[str]:
        return [stage_entry(entry)[0] for entry in self.stages]


def stage_entry(entry: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (name, options), = entry.items()
    return name, options or {}

"""A validated architecture search: the search file (data YAML, reference model, the
`architecture:` space, the `search:` settings), where its study lives; every value the space
can take is built before any trial runs.

    data: recipes/data/trashnet_calibration.yaml   # the competition's data YAML
    reference: recipes/models/mobilenetv3.yaml     # latency is timed against this model
    architecture: {...}                            # compress.search.architecture
    search:
      minimize: latency          # or macs, params; held-out macro F1 is always maximised
      sampler: tpe               # or nsga2
      min_f1: 0.5                # constraint: trials below it are never on the front
      prune_below_f1: 0.3        # stop a trial whose held-out F1 after an epoch is below it
      prune_margin: 0.15         # ... or this far below the median of finished trials there
      proxy: {epochs: 5, train_share: 1.0, image_scale: 1.0}
      bench: {warmup: 10, runs: 100}
      seed: 0
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from compress.data.config import DataConfig, load_data_config
from compress.errors import UserError
from compress.file_kinds import ARCH_SEARCH, read_yaml_of_kind
from compress.recipe.search_space import ParamSpec
from compress.search.architecture import ArchitectureSpace, check_space, load_space
from compress.search.job import StudyOptions, study_folder
from compress.search.storage import open_storage

DEFAULT_HELD_OUT = 0.1  # CALIBRATION_RATIO when the data YAML has none


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Proxy(_Strict):
    """What a trial trains: a few epochs, on a share of the training images, at a scaled
    input (the design's own input size is what is timed)."""

    epochs: int = Field(5, ge=1)
    train_share: float = Field(1.0, gt=0, le=1)
    image_scale: float = Field(1.0, gt=0, le=1)


class TrialBench(_Strict):
    warmup: int = Field(10, ge=0)
    runs: int = Field(100, ge=1)


class ArchSearchSection(_Strict):
    minimize: Literal["latency", "macs", "params"] = Field(
        "latency", description="the second objective: batch-1 latency as a fraction of the "
        "reference's (timed interleaved), MACs or parameters")
    sampler: Literal["tpe", "nsga2"] = "tpe"
    min_f1: float | None = Field(None, ge=0, le=1)
    prune_below_f1: float | None = Field(None, ge=0, le=1)
    prune_margin: float | None = Field(None, gt=0, le=1)
    proxy: Proxy = Proxy()
    bench: TrialBench = TrialBench()
    seed: int | None = None


class ArchSearchFile(_Strict):
    data: str = Field(description="the competition's data YAML: images, augmentation, "
                      "batch, CALIBRATION_RATIO (the held-out split trials are judged on)")
    reference: str = Field(description="model YAML or checkpoint that latency is timed "
                           "against")
    architecture: dict[str, Any]
    search: ArchSearchSection = ArchSearchSection()


@dataclass
class ArchJob:
    spec_path: str
    space: ArchitectureSpace
    section: ArchSearchSection
    data: DataConfig  # with CALIBRATION_RATIO set
    classes: list[str]
    reference: str
    out_dir: Path
    storage_url: str
    study_name: str
    trials: int
    timeout: float | None
    workers: int
    device: str = "auto"

    @property
    def params(self) -> dict[str, ParamSpec]:
        return self.space.params()


def prepare_arch_search(spec_path: str, study: StudyOptions, data_root: str | None = None,
                        minimize: str | None = None, device: str = "auto",
                        echo: Callable[[str], None] = print) -> ArchJob:
    """Read and check the search file, the data and the reference; create the study's
    folder and open its storage."""
    from compress.data.folders import find_classes, split_folder
    from compress.recipe.loading import describe_error

    path = Path(spec_path)
    raw = read_yaml_of_kind(path, "search file", (ARCH_SEARCH,),
                            "data, reference, architecture and search")
    if minimize is not None:
        raw.setdefault("search", {})["minimize"] = minimize
    try:
        spec = ArchSearchFile(**raw)
    except ValidationError as exc:
        raise UserError(f"search file {path}: {describe_error(exc.errors()[0])}") from None
    data = load_data_config(spec.data, data_root)
    if data.calibration_ratio <= 0:
        data = replace(data, calibration_ratio=DEFAULT_HELD_OUT)
        echo(f"data {spec.data}: no CALIBRATION_RATIO; {DEFAULT_HELD_OUT:.0%} of train is "
             "held out of every trial's training to judge it (val stays for the report)")
    classes = find_classes(split_folder(data.data_path, "train"))
    space = load_space(spec.architecture, f"search file {path}")
    check_space(space, len(classes), f"search file {path}")
    _check_reference(spec.reference, path)
    out_dir, url = study_folder(study, path, "arch-search")
    job = ArchJob(str(path), space, spec.search, data, classes, spec.reference, out_dir, url,
                  study.study or path.stem, study.trials, study.timeout, study.workers, device)
    open_storage(url)  # an unreachable server fails here, before any work
    return job


def _check_reference(reference: str, path: Path) -> None:
    from compress.models.kindle import load_kindle_yaml

    if reference.endswith((".yaml", ".yml")):
        load_kindle_yaml(reference)
    elif not Path(reference).is_file():
        raise UserError(f"search file {path}: reference {reference}: file not found (a model "
                        "YAML or a checkpoint)")


def reference_model(job: ArchJob):
    """The model latency is timed against, and its input size (a YAML's at the data's
    IMG_SIZE; weights do not change the time)."""
    from compress.checkpoint import load_checkpoint
    from compress.models import build_model
    from compress.models.kindle import load_kindle_yaml

    if job.reference.endswith((".yaml", ".yml")):
        return build_model({"kind": "kindle", "config": load_kindle_yaml(job.reference)}), \
            job.data.img_size
    checkpoint = load_checkpoint(job.reference)
    return checkpoint.model, checkpoint.input_size

"""The competition's data YAML (DATA_PATH, IMG_SIZE, AUG_TRAIN, ...), typed and checked."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from compress import defaults
from compress.data.cache import MODES as CACHE_MODES
from compress.data.folders import log
from compress.errors import UserError
from compress.file_kinds import DATA, read_yaml_of_kind, type_name

# The training augmentation policies of the competition's code, by their names there.
TrainPolicy = Literal["simple_augment_train", "randaugment_train"]
TRAIN_POLICIES: tuple[str, ...] = get_args(TrainPolicy)

# Keys of the competition's data YAML that this tool reads, and their field names here.
YAML_KEYS = {
    "DATA_PATH": "data_path", "IMG_SIZE": "img_size", "AUG_TRAIN": "aug_train",
    "AUG_TRAIN_PARAMS": "aug_train_params", "BATCH_SIZE": "batch_size", "EPOCHS": "epochs",
    "VAL_RATIO": "val_ratio", "INIT_LR": "init_lr", "FP16": "fp16", "SEED": "seed",
    # Additions of ours; the competition files simply do not have them.
    "LABEL_SMOOTHING": "label_smoothing", "WEIGHT_DECAY": "weight_decay",
    "NUM_WORKERS": "num_workers", "GRAD_CLIP": "grad_clip",
    "CALIBRATION_RATIO": "calibration_ratio", "CALIBRATION_SEED": "calibration_seed",
    "CACHE": "cache",
}

# What a field's annotation lets a YAML value be (bool is not a number here).
_ALLOWED = {"str": ((str,), "a string"), "int": ((int,), "an integer"),
            "float": ((int, float), "a number"), "bool": ((bool,), "true or false"),
            "dict[str, Any]": ((dict,), "a mapping"),
            "float | None": ((int, float, type(None)), "a number"),
            "int | None": ((int, type(None)), "an integer")}
_KEY_OF_FIELD = {name: key for key, name in YAML_KEYS.items()}

# Keys the competition files carry that mean nothing here (test policy is fixed).
_IGNORED_KEYS = {"DATASET", "AUG_TEST", "AUG_TEST_PARAMS"}


@dataclass
class DataConfig:
    """The data YAML, typed. Field names are the lower-case competition keys."""

    data_path: str
    img_size: int = 224
    aug_train: str = "simple_augment_train"
    aug_train_params: dict[str, Any] = field(default_factory=dict)
    batch_size: int = defaults.BATCH_SIZE
    epochs: int = 100
    val_ratio: float = 0.0
    init_lr: float = 0.1
    fp16: bool = True
    seed: int = defaults.SEED
    label_smoothing: float = 0.0
    weight_decay: float = 0.0
    num_workers: int = defaults.NUM_WORKERS
    grad_clip: float | None = None
    # Share of train held out of training (stratified, seeded by SEED) for the decisions
    # made later on this model (cuts, calibration, the epoch to keep): never val.
    calibration_ratio: float = 0.0
    # The seed of the splits (that one, and VAL_RATIO's without a val folder) where they
    # must not follow SEED: runs of several training seeds judged on the same images.
    calibration_seed: int | None = None
    # Where decoded images are kept: auto, ram, disk or stream (compress.data.cache).
    cache: str = "auto"

    @property
    def held_out_seed(self) -> int:
        """The seed the data's splits are drawn with (CALIBRATION_RATIO's, and VAL_RATIO's
        where there is no val folder): CALIBRATION_SEED, else SEED."""
        return self.seed if self.calibration_seed is None else self.calibration_seed

    def __post_init__(self) -> None:
        self._check_types()
        if self.aug_train not in TRAIN_POLICIES:
            raise UserError(f"AUG_TRAIN: expected one of {', '.join(TRAIN_POLICIES)}, "
                            f"got {self.aug_train!r}")
        for name in ("img_size", "batch_size", "epochs"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UserError(f"{name.upper()}: expected a positive integer, "
                                f"got {getattr(self, name)!r}")
        if not 0.0 <= self.val_ratio < 1.0:
            raise UserError(f"VAL_RATIO: expected a value in [0, 1), got {self.val_ratio}")
        if isinstance(self.calibration_ratio, bool) or \
                not isinstance(self.calibration_ratio, (int, float)) or \
                not 0.0 <= self.calibration_ratio < 0.5:
            raise UserError(f"CALIBRATION_RATIO: expected a value in [0, 0.5), "
                            f"got {self.calibration_ratio!r}")
        if self.calibration_seed is not None and not 0 <= self.calibration_seed < 2**32 - 1:
            raise UserError(f"CALIBRATION_SEED: expected an integer in [0, 2**32 - 1), "
                            f"got {self.calibration_seed}")
        if self.cache not in CACHE_MODES:
            raise UserError(f"CACHE: expected one of {', '.join(CACHE_MODES)}, got {self.cache!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(f"LABEL_SMOOTHING: expected a value in [0, 1), "
                            f"got {self.label_smoothing}")

    def _check_types(self) -> None:
        """Each key holds what its field says (a YAML typo such as `EPOCHS: [120]` or
        `FP16: yes please` would otherwise fail deep in training)."""
        for item in fields(self):
            value = getattr(self, item.name)
            types, wanted = _ALLOWED[item.type]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise UserError(f"{_KEY_OF_FIELD[item.name]}: expected {wanted}, got "
                                f"{type_name(value)}")
        for key, value in self.aug_train_params.items():  # null: the policy's default
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise UserError(f"AUG_TRAIN_PARAMS.{key}: expected an integer or null, got "
                                f"{type_name(value)}")


def load_data_config(path: str | Path, data_path: str | None = None) -> DataConfig:
    """Read a data YAML with the competition's keys; `data_path` overrides DATA_PATH."""
    path = Path(path)
    raw = read_yaml_of_kind(path, "data config", (DATA,),
                            "the competition's keys (DATA_PATH, IMG_SIZE, ...)")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in YAML_KEYS:
            if value is not None:
                values[YAML_KEYS[key]] = value
        elif key not in _IGNORED_KEYS:
            log.warning("data config %s: ignoring unknown key %s", path, key)
    if data_path is not None:
        values["data_path"] = data_path
    if "data_path" not in values:
        raise UserError(f"data config {path}: missing key DATA_PATH (or pass --data)")
    try:
        return DataConfig(**values)
    except UserError as exc:
        raise UserError(f"data config {path}: {exc}") from None
    except TypeError as exc:
        raise UserError(f"data config {path}: {exc}") from None

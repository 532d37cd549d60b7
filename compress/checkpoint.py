"""Checkpoints without pickle: architecture as JSON, weights as safetensors, in one file.

A checkpoint is a `.safetensors` file whose metadata entry "compress" holds JSON:
  model       the base model's spec (see compress.models.build_model)
  edits       structural changes to the base (resized or replaced layers) as data
  classes     class names in label order
  input_size  the square image size the model was trained for
  info        free-form provenance (training command, epochs, metrics)
Loading rebuilds the module tree from data, applies the edits, then loads the tensors.
Nothing is ever unpickled; foreign `.pt` files are read with `weights_only=True` only.
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.errors import StageFailed, UserError
from compress.fileio import atomic_path
from compress.models import ModelSpec, build_model, classifier_layer
from compress.models.module_spec import apply_edits, structural_edits

FORMAT_VERSION = 1
METADATA_KEY = "compress"


@dataclass
class Checkpoint:
    model: nn.Module
    model_spec: ModelSpec
    classes: list[str]
    input_size: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def held_out_split(self) -> dict[str, Any] | None:
        """The train images the model never trained on, as `compress train` records them
        with CALIBRATION_RATIO ({ratio, seed, files}, the files relative to DATA/train): the
        split for decisions made on it."""
        return self.info.get("calibration")

    @property
    def held_out_files(self) -> list[str] | None:
        return (self.held_out_split or {}).get("files")

    @property
    def original_training(self) -> dict[str, Any] | None:
        """The peak rate, length and schedule of the training the model came from: its own
        record where `compress train` wrote one, else the one a pipeline stage carried over
        from the run's input (what learning-rate rewinding goes back to)."""
        record = self.info.get("train") or self.info.get("original_training")
        if not record:
            return None
        return {key: record[key] for key in ("lr", "epochs", "schedule") if key in record}


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    """Write atomically (a crash mid-write never leaves a damaged file at `path`), and only
    what loads back: the file's model is rebuilt from its data and must give the same
    outputs as `checkpoint.model`, else nothing is written."""
    from safetensors.torch import save_file

    path = Path(path)
    try:
        edits = structural_edits(checkpoint.model, build_model(checkpoint.model_spec))
    except TypeError as exc:  # a replaced layer of a type module_spec cannot describe
        raise StageFailed(f"checkpoint {path}: the edited model cannot be stored ({exc})") \
            from None
    header = {
        "format_version": FORMAT_VERSION,
        "model": checkpoint.model_spec,
        "edits": edits,
        "classes": list(checkpoint.classes),
        "input_size": int(checkpoint.input_size),
        "info": checkpoint.info,
    }
    tensors = {k: v.detach().cpu().contiguous().clone()
               for k, v in checkpoint.model.state_dict().items()}
    _check_reloads(path, checkpoint, header, tensors)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(header)})
    return path


def _check_reloads(path: Path, checkpoint: Checkpoint, header: dict[str, Any],
                   tensors: dict[str, torch.Tensor]) -> None:
    """Rebuild from the header and tensors as `load_checkpoint` will, and compare outputs
    on one random image."""
    try:
        rebuilt = _rebuild(header, tensors, f"checkpoint {path}")
    except UserError as exc:
        raise StageFailed(f"checkpoint {path}: would not load again ({exc}); nothing written") \
            from None
    model = checkpoint.model
    device = next(model.parameters(), torch.empty(0)).device
    image = torch.randn(1, 3, checkpoint.input_size, checkpoint.input_size,
                        generator=torch.Generator().manual_seed(0))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model(image.to(device)).float().cpu()
            got = rebuilt(image)
    finally:
        model.train(was_training)
    scale = float(expected.abs().max()) if expected.numel() else 0.0  # random weights: ~1e-8
    if got.shape != expected.shape or \
            not torch.allclose(got, expected, rtol=1e-3, atol=1e-4 * scale):
        raise StageFailed(f"checkpoint {path}: the model rebuilt from it computes other outputs "
                          f"(max difference {(got - expected).abs().max():.3g}); nothing written")


def _rebuild(header: dict[str, Any], tensors: dict[str, torch.Tensor], source: str
             ) -> nn.Module:
    """The model a checkpoint header describes, with its tensors loaded, in eval mode."""
    try:
        # First without memory: the sizes the metadata asks for must be those of the
        # tensors in the file before anything is allocated (a crafted file could ask for TBs).
        try:
            with torch.device("meta"):
                base = build_model(header["model"])
        except NotImplementedError:  # a constructor that computes on its tensors (RegNet)
            base = build_model(header["model"])  # the builder's own sizes, not the file's
        with torch.device("meta"):
            shell = apply_edits(base, header["edits"])
        fitted_weights(shell, tensors, source=source)
        model = apply_edits(build_model(header["model"]), header["edits"])
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise UserError(f"{source}: malformed compress metadata "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    load_weights(model, tensors, source=source)
    return model.eval()


def is_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte header length and a JSON object."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return int.from_bytes(head[:8], "little") < os.path.getsize(path)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Rebuild a model from a compress checkpoint; anything else is refused clearly."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path}: file not found")
    if not is_safetensors(path):
        _refuse_foreign_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as exc:  # its one type for a bad header, JSON or truncated data
        raise UserError(f"checkpoint {path}: corrupt safetensors file ({exc})") from None
    if METADATA_KEY not in metadata:
        raise UserError(f"checkpoint {path}: safetensors file without compress metadata "
                        "(weights only: use `compress import` with its model YAML)")
    try:
        header = json.loads(metadata[METADATA_KEY])
        version = header.get("format_version")
    except (ValueError, AttributeError):
        raise UserError(f"checkpoint {path}: its compress metadata is not a JSON object") \
            from None
    if version != FORMAT_VERSION:
        raise UserError(f"checkpoint {path}: format version {version} "
                        f"is not supported (expected {FORMAT_VERSION})")
    model = _rebuild(header, tensors, f"checkpoint {path}")
    _check_classes(path, model, header.get("classes"))
    return Checkpoint(model, header["model"], header["classes"], header["input_size"],
                      header.get("info", {}))


def load_teacher(path: str | Path, classes: list[str]) -> Checkpoint:
    """A checkpoint to distil from (or time against): it must predict `classes`, in order.
    Errors name the file; callers prefix the option that gave it."""
    teacher = load_checkpoint(path)
    if teacher.classes != classes:
        raise UserError(f"{path}: its classes {teacher.classes} are not the input's {classes}")
    return teacher


def _check_classes(path: Path, model: nn.Module, classes: object) -> None:
    """The class names must match the classifier's outputs one to one."""
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise UserError(f"checkpoint {path}: its class names are not a list of strings")
    layer = classifier_layer(model)
    outputs = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    if outputs != len(classes):
        raise UserError(f"checkpoint {path}: {len(classes)} class names for a model with "
                        f"{outputs} outputs")


def _refuse_foreign_file(path: Path) -> None:
    """Explain what a non-checkpoint file is; never unpickle anything."""
    read_state_dict(path)  # raises a clear error when torch refuses the file as unsafe
    raise UserError(f"checkpoint {path}: a plain state_dict without architecture; "
                    "turn it into a checkpoint with `compress import --model MODEL.yaml "
                    f"--weights {path} --out CHECKPOINT`")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a foreign `.pt` state_dict with `torch.load(weights_only=True)` only."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights {path}: file not found")
    onnx_file = UserError(f"{path}: an ONNX model, not weights or a checkpoint (bench, "
                          "predict and inspect take ONNX files; the other commands need a "
                          "checkpoint)")
    if path.suffix.lower() == ".onnx":
        raise onnx_file
    if is_safetensors(path):  # a plain safetensors state_dict (timm's and HF's format)
        from safetensors.torch import load_file

        return _unwrapped(load_file(str(path)), path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        if _parses_as_onnx(path):
            raise onnx_file from None
        raise UserError(f"{path}: refused, {_torch_refusal(exc, path)}") from None
    return _unwrapped(obj, path)


# Where training scripts keep the weights inside a saved dict, preferred first (an EMA copy
# is what timm and most recipes evaluate and ship).
_WRAPPER_KEYS = ("state_dict_ema", "model_ema", "ema", "model_state_dict", "state_dict", "model",
                 "net", "module")


def _unwrapped(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state_dict inside common wrappers, without DDP's / torch.compile's key prefixes."""
    for _ in range(3):  # {"ema": {"module": {...}}} and the like
        if isinstance(obj, dict) and not _is_state_dict(obj):
            inner = next((obj[k] for k in _WRAPPER_KEYS if _is_state_dict(obj.get(k))), None)
            if inner is None:
                inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)),
                             None)
            obj = inner if inner is not None else obj
    if not _is_state_dict(obj):
        raise UserError(f"{path}: refused, expected a state_dict (a mapping of names to "
                        f"tensors), or one under a key {', '.join(_WRAPPER_KEYS)}")
    obj = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in obj):
            obj = {k.removeprefix(prefix): v for k, v in obj.items()}
    return obj


def _is_state_dict(obj: Any) -> bool:
    """A mapping of names to tensors (a few non-tensor entries, such as a step count, are
    tolerated and dropped)."""
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) for k in obj) and \
        sum(isinstance(v, torch.Tensor) for v in obj.values()) >= max(1, len(obj) // 2)


def _parses_as_onnx(path: Path) -> bool:
    import onnx

    try:
        return len(onnx.load(str(path), load_external_data=False).graph.node) > 0
    except Exception:  # protobuf's DecodeError and friends: not ONNX
        return False


def _torch_refusal(exc: Exception, path: Path) -> str:
    """Why torch.load(weights_only=True) refused a file, in one line (torch's own text is
    a page of advice that ends in allowlisting the class, which would run its code)."""
    with path.open("rb") as f:
        start = f.read(4)
    if not (start.startswith(b"PK") or start.startswith(b"\x80")):  # torch's zip, or a pickle
        return "neither a compress checkpoint nor a torch file of tensors"
    unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    if unsafe:
        return (f"it holds a pickled Python object ({unsafe.group(1)}), not only tensors, "
                "and such files are never unpickled here: save `model.state_dict()` instead")
    if "weights only load failed" in str(exc).lower():
        return "it holds pickled Python objects, not only tensors, and is never unpickled here"
    return "neither a compress checkpoint nor a torch file of tensors"


_ROW_KEY = re.compile(r"^(model\.\d+)\.(.*)$")


def _candidate_keys(key: str) -> list[str]:
    """Spellings of one Kindle state_dict key: with or without the `model.` prefix and the
    `.0` that one-block rows get from their Sequential wrapper."""
    keys = [key] if key.startswith("model.") else [key, f"model.{key}"]
    candidates = []
    for k in keys:
        candidates.append(k)
        match = _ROW_KEY.match(k)
        if match:
            row, rest = match.groups()
            candidates.append(f"{row}.0.{rest}")
            if rest.startswith("0."):
                candidates.append(f"{row}.{rest[2:]}")
    return candidates


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load tensors strictly; names and shapes that do not fit are listed in the error."""
    fitted = OrderedDict(fitted_weights(model, tensors, source))
    # The model's own per-module versions: MNASNet refuses a state_dict without them.
    fitted._metadata = getattr(model.state_dict(), "_metadata", None)  # type: ignore[attr-defined]
    model.load_state_dict(fitted, strict=True)


def fitted_weights(model: nn.Module, tensors: dict[str, torch.Tensor], source: str
                   ) -> dict[str, torch.Tensor]:
    """`tensors` under the model's own names; a user error listing the names and shapes
    that do not fit. `model` may live on the meta device (nothing is copied)."""
    expected = model.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        target = next((k for k in _candidate_keys(key) if k in expected), key)
        renamed[target] = value
    missing = [k for k in expected if k not in renamed]
    unexpected = [k for k in renamed if k not in expected]
    wrong_shape = [f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}"
                   for k, v in renamed.items() if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected),
                             ("wrong shape", wrong_shape)):
            if items:
                parts.append(f"{len(items)} {label} (e.g. {', '.join(items[:3])})")
        raise UserError(f"{source}: weights do not fit the model: {'; '.join(parts)}")
    return renamed


def import_weights(model: str | Path, weights: str | Path, classes: list[str],
                   input_size: int, width_mult: float | None = None) -> tuple[Checkpoint, str]:
    """A model (YAML, torchvision or timm name) + the user's trained weights -> a compress
    checkpoint, and a note when the file's classifier head did not fit the classes (then
    the head starts fresh and the model needs fine-tuning)."""
    from compress.models import model_spec_from_arg

    spec = model_spec_from_arg(str(model), num_classes=len(classes), width_mult=width_mult)
    built = build_model(spec)
    tensors = read_state_dict(weights)
    note = _replace_foreign_head(built, tensors, len(classes))
    load_weights(built, tensors, source=str(weights))
    built.eval()
    return Checkpoint(built, spec, list(classes), input_size,
                      info={"imported_from": {"model": str(model), "weights": str(weights)},
                            **({"note": note} if note else {})}), note


def _replace_foreign_head(model: nn.Module, tensors: dict[str, torch.Tensor],
                          num_classes: int) -> str:
    """Drop the file's classifier tensors when they were trained for another class count
    (an ImageNet head of 1000 classes); the model's fresh head stays. In place."""
    head = classifier_layer(model)
    name = next(n for n, m in model.named_modules() if m is head)
    matches = {}  # the file's key -> the shape the model expects
    for own_key, value in head.state_dict().items():
        key = next((k for k in _candidate_keys(f"{name}.{own_key}") if k in tensors), None)
        if key is not None:
            matches[key] = value.shape
    other_count = [k for k, shape in matches.items() if tensors[k].shape != shape and
                   tensors[k].shape[1:] == shape[1:]]  # only the class dimension differs
    if not other_count:
        return ""  # fits, or does not fit for another reason that load_weights names
    file_classes = tensors[other_count[0]].shape[0]
    for key in matches:
        del tensors[key]
    tensors.update({f"{name}.{k}": v for k, v in head.state_dict().items()})  # the fresh head
    return (f"the classifier {name} in the file has {file_classes} outputs for "
            f"{num_classes} classes: it was replaced by a fresh one (fine-tune before use)")

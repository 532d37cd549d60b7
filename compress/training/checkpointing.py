"""What a training run leaves in its folder, and how an interrupted run picks it up again:
best and last checkpoints, the optimizer's state, and the per-epoch history.

The train state holds the optimizer's buffers as tensors and the counters as JSON metadata,
so a run resumes without pickle.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from compress.checkpoint import Checkpoint, save_checkpoint
from compress.errors import UserError, first_line
from compress.fileio import atomic_path, write_json_atomic
from compress.training.ema import WeightAverage

BEST_NAME, LAST_NAME, STATE_NAME, HISTORY_NAME = (
    "best.safetensors", "last.safetensors", "train_state.safetensors", "history.json")


@dataclass
class Progress:
    """How far a run has come: what is saved after each epoch and restored on resume."""

    epoch: int = 0  # epochs finished
    best_f1: float = -1.0  # the score `record` ranks epochs by
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)

    def record(self, row: dict[str, Any]) -> bool:
        """Add an evaluated epoch; True when it is the best so far: by its macro F1 on the
        held-out train images where the row has one, else by val's."""
        self.history.append(row)
        self.epoch = row["epoch"]
        score = row.get("held_out_macro_f1", row["val_macro_f1"])
        improved = score > self.best_f1
        if improved:
            self.best_f1, self.best_epoch = score, row["epoch"]
        return improved


def fingerprint(model: nn.Module, teacher: nn.Module | None, train_set: Dataset,
                val_set: Dataset, config: Any) -> str:
    """What a run was started with: the starting weights and which of them train, the
    teacher, the images (files and labels) and their transforms, and the settings that
    change the result. Where to run (device, loader workers) and which epoch to hand back
    (keep) do not count."""
    digest = hashlib.sha256()
    for part in (_weights(model), _weights(teacher), _images(train_set), _images(val_set)):
        digest.update(part.encode() if isinstance(part, str) else part)
    settings = {k: v for k, v in asdict(config).items()
                if k not in ("device", "num_workers", "keep")}
    settings["trainable"] = [n for n, p in model.named_parameters() if p.requires_grad]
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _weights(model: nn.Module | None) -> bytes:
    if model is None:
        return b"none"
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.digest()


def _images(dataset: Dataset) -> str:
    samples = getattr(dataset, "samples", None)
    listed = [[str(path), label] for path, label in samples] if samples is not None \
        else len(dataset)
    return json.dumps([listed, repr(getattr(dataset, "transform", None))])


@dataclass
class TrainedState:
    """What a resumed run restores besides the counters: the weights being trained, the
    optimizer's buffers, the schedule's position and, where kept, the weight average."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: WeightAverage | None = None


def resume(out_dir: Path, state: TrainedState, started_as: str) -> Progress | None:
    """Load the last finished epoch of a run interrupted in `out_dir` into `state`; None when
    there is nothing to resume. A run started with other inputs (`started_as`, its
    fingerprint) is refused, never continued."""
    state_path = out_dir / STATE_NAME
    if not state_path.is_file():
        return None
    if _read_meta(state_path).get("fingerprint") != started_as:
        raise UserError(f"{out_dir} holds a training run started with other inputs "
                        "(checkpoint, data or settings), or by an older version; choose "
                        "another --out, or delete it to start again")
    meta = _load_train_state(state_path, state)
    with warnings.catch_warnings():  # replaying the schedule, not training
        warnings.simplefilter("ignore")
        for _ in range(meta["scheduler_steps"]):
            state.scheduler.step()
    return Progress(meta["epoch"], meta["best_f1"], meta["best_epoch"], meta["history"])


def save_epoch(out_dir: Path, checkpoint: Checkpoint, improved: bool, progress: Progress,
               state: TrainedState, started_as: str) -> None:
    """Everything `resume` needs, written after each epoch; best only when it improved.
    `checkpoint` holds the weights evaluated (the average where one is kept)."""
    if improved:
        save_checkpoint(out_dir / BEST_NAME, checkpoint)
    save_checkpoint(out_dir / LAST_NAME, checkpoint)
    _save_train_state(out_dir / STATE_NAME, state, {
        "epoch": progress.epoch, "scheduler_steps": state.scheduler.last_epoch,
        "best_f1": progress.best_f1, "best_epoch": progress.best_epoch,
        "history": progress.history, "fingerprint": started_as})
    write_json_atomic(out_dir / HISTORY_NAME, progress.history)


def _save_train_state(path: Path, state: TrainedState, meta: dict[str, Any]) -> None:
    """The weights, the optimizer's buffers and the counters in one file, replaced whole:
    a run killed while saving resumes from one consistent epoch (separate files could pair
    one epoch's weights with the previous epoch's optimizer)."""
    from safetensors.torch import save_file

    tensors = {f"model/{key}": value.detach().cpu().contiguous()
               for key, value in state.model.state_dict().items()}
    if state.ema is not None:
        tensors |= {f"ema/{key}": value.detach().cpu().contiguous()
                    for key, value in state.ema.state_dict().items()}
    for index, buffers in state.optimizer.state_dict()["state"].items():
        for name, value in buffers.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}.{name}"] = value.detach().cpu().contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"train_state": json.dumps(meta)})


def _read_meta(path: Path) -> dict[str, Any]:
    """The counters of a train state. A file that cannot be read is an error naming it, not
    a fresh start: restarting would overwrite the epochs it holds."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("train_state", "{}"))
    except SafetensorError as exc:  # a truncated file, or not safetensors at all
        raise UserError(f"{path}: the training state cannot be read ({first_line(exc)}); "
                        "delete it to start the run again") from None
    except ValueError:  # its counters are not JSON
        raise UserError(f"{path}: the training state's counters are not JSON; delete it to "
                        "start the run again") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path}: the training state's counters are not a JSON object; "
                        "delete it to start the run again")
    return meta


def _load_train_state(path: Path, state: TrainedState) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["train_state"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not iterable)
    state.model.load_state_dict({key.removeprefix("model/"): value
                                 for key, value in tensors.items() if key.startswith("model/")})
    if state.ema is not None:
        state.ema.load_state_dict({key.removeprefix("ema/"): value
                                   for key, value in tensors.items() if key.startswith("ema/")})
    buffers = state.optimizer.state_dict()
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            index, name = key.removeprefix("optimizer/").split(".", 1)
            buffers["state"].setdefault(int(index), {})[name] = value
    state.optimizer.load_state_dict(buffers)
    return meta

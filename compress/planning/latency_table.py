"""What each option saves in measured time on this device, cached per device fingerprint.

An entry is the share of the model's latency that one option saves, measured as the whole
model with that one cut against the model without it, timed interleaved in the runner the
recipe deploys with. Shares rather than milliseconds: a busy machine slows both models
alike, so the share carries over between sittings where milliseconds do not.

The cache file is named by the device fingerprint (CPU model and flags, threads, provider,
GPU, library versions); inside it, entries are keyed by the model's architecture (its
modules, not its weights), input size and batch. A second plan on the same device and
architecture reuses every entry; another device, thread count or library version builds
its own.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from compress.fileio import write_json_atomic

CACHE_ENV = "COMPRESS_CACHE_DIR"


def cache_dir() -> Path:
    """$COMPRESS_CACHE_DIR, else $XDG_CACHE_HOME/compress, else ~/.cache/compress."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "compress"


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def architecture_key(model: nn.Module, input_size: int, batch: int) -> str:
    """The same for two models whose modules (types, widths, kernels, strides) are the same,
    whatever their weights."""
    return digest([repr(model), input_size, batch])


@dataclass
class LatencyTable:
    """Saved shares of one architecture on one device; `reused` counts entries found in
    the cache, `measured` those timed now."""

    path: Path
    fingerprint: dict[str, Any]
    architecture: str
    saved: dict[str, float] = field(default_factory=dict)
    # Per timing of a chunk: |1 - ratio| of the model timed against a copy of itself.
    noise: list[float] = field(default_factory=list)
    reused: int = 0
    measured: int = 0

    @classmethod
    def open(cls, fingerprint: dict[str, Any], architecture: str,
             directory: Path | None = None) -> LatencyTable:
        path = (directory or cache_dir()) / "latency" / f"{digest(fingerprint)}.json"
        entry = _read(path).get("architectures", {}).get(architecture, {})
        return cls(path, fingerprint, architecture, dict(entry.get("saved", {})),
                   list(entry.get("noise", [])))

    def missing(self, keys: list[str]) -> list[str]:
        return [key for key in keys if key not in self.saved]

    def record(self, shares: dict[str, float], noise: float) -> None:
        """Shares measured in one timing (in turn with the model and a copy of it, whose
        deviation from the model is `noise`), written to the cache at once: an interrupted
        plan keeps what it timed."""
        self.saved.update(shares)
        self.noise.append(noise)
        self.measured += len(shares)
        self._write()

    @property
    def noise_floor(self) -> float:
        """Twice the median timing noise: a smaller share is no evidence of a saving."""
        return 2 * float(np.median(self.noise)) if self.noise else 0.0

    def _write(self) -> None:
        data = _read(self.path)
        data["fingerprint"] = self.fingerprint
        data.setdefault("architectures", {})[self.architecture] = {"saved": self.saved,
                                                                   "noise": self.noise}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, data)


def _read(path: Path) -> dict[str, Any]:
    """The cache file's data; a missing or damaged file is an empty cache (it is rebuilt)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}

"""What each option saves in measured time on this device, cached per device fingerprint.

An entry is the share of the model's latency that one option saves. Options are timed in
sets, not one by one: each set (one kind of cut at one amount, at every place that offers
it: every channel group pruned by half, every squeeze-excite gate removed, ...) is applied
to the whole model and timed interleaved against the model without it, in the runner the
recipe deploys with, and the set's measured saving is split over its options in proportion
to the MACs each removes (`split_set_savings`). Why sets: on a 0.7 ms MobileNetV3 on a
2-core CPU, eight byte-identical copies of the model timed in one turn deviated from it by
up to +-10 % where a single cut saves 1-5 % (benchmarks/RESULTS.md, "Compress to a latency
budget", 2026-11-30, "cut sets instead of single cuts"), so single-cut timings were mostly
noise, and summed over dozens of cuts they promised savings (80-90 %) no plan delivered
(30-40 %); a set saves 20-70 %. Shares rather than milliseconds: a busy machine slows both
models alike, so the share carries over between sittings where milliseconds do not.

The cache file is named by the device fingerprint (CPU model and flags, threads, provider,
GPU, library versions); inside it, entries are keyed by the model's architecture (its
modules, not its weights), input size and batch. A second plan on the same device and
architecture reuses every entry; another device, thread count or library version builds
its own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compress.fileio import cache_dir, file_lock, write_json_atomic

if TYPE_CHECKING:  # a process that only reads or writes the cache need not load torch
    from torch import nn


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
    # Per timing of the sets: |1 - ratio| of the model timed against a copy of itself.
    noise: list[float] = field(default_factory=list)
    sets: dict[str, float] = field(default_factory=dict)  # each set's measured saving
    reused: int = 0
    measured: int = 0
    disturbed: bool = False  # a timing of sets now stayed disturbed by other processes

    @classmethod
    def open(cls, fingerprint: dict[str, Any], architecture: str,
             directory: Path | None = None) -> LatencyTable:
        path = (directory or cache_dir()) / "latency" / f"{digest(fingerprint)}.json"
        entry = _read(path).get("architectures", {}).get(architecture, {})
        return cls(path, fingerprint, architecture, dict(entry.get("saved", {})),
                   list(entry.get("noise", [])), dict(entry.get("sets", {})))

    def missing(self, keys: list[str]) -> list[str]:
        return [key for key in keys if key not in self.saved]

    def record(self, shares: dict[str, float], noise: float) -> None:
        """Shares from one timing (in turn with the model and a copy of it, whose deviation
        from the model is `noise`), written to the cache at once. Processes planning on the
        same device (search workers) share the file: it is read, merged and written under
        its lock, so what another process recorded since this table was opened is kept, and
        this table takes it in too."""
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            data = _read(self.path)
            entry = data.setdefault("architectures", {}).get(self.architecture, {})
            self.saved = {**self.saved, **entry.get("saved", {}), **shares}
            self.noise = [*entry.get("noise", self.noise), noise]
            self.sets = {**entry.get("sets", {}), **self.sets}
            data["fingerprint"] = self.fingerprint
            data["architectures"][self.architecture] = {
                "saved": self.saved, "noise": self.noise, "sets": self.sets}
            write_json_atomic(self.path, data)
        self.measured += len(shares)

    @property
    def median_noise(self) -> float:
        """The median deviation of the model timed against a copy of itself."""
        return float(np.median(self.noise)) if self.noise else 0.0


def split_set_savings(sets: dict[Any, list[str]], set_saved: dict[Any, float],
                      weights: dict[str, float]) -> dict[str, float]:
    """Each option's share: its set's measured saving (none when the set measured slower)
    split over the set's options in proportion to `weights` (the MACs each removes), evenly
    where they remove none."""
    shares = {}
    for name, keys in sets.items():
        saved = max(set_saved[name], 0.0)
        total = sum(max(weights[key], 0.0) for key in keys)
        for key in keys:
            shares[key] = saved * (max(weights[key], 0.0) / total if total > 0
                                   else 1.0 / len(keys))
    return shares


def _read(path: Path) -> dict[str, Any]:
    """The cache file's data; a missing or damaged file is an empty cache (it is rebuilt)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}

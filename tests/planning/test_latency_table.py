"""The latency table: shares saved, cached per device fingerprint and architecture, reused
by a second plan, rebuilt where the cache is damaged; a set's saving split over its
options by the MACs they remove. (Processes sharing one table: test_latency_table_shared.)"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compress.planning.latency_table import LatencyTable, architecture_key, split_set_savings

DEVICE = {"cpu": "test CPU", "cpu_flags": ["avx2"], "threads": 2, "provider": "cpu"}


def test_shares_are_kept_per_device_and_architecture_and_reused(tmp_path):
    table = LatencyTable.open(DEVICE, "arch", tmp_path)
    assert table.missing(["prune:x:0.5"]) == ["prune:x:0.5"] and table.median_noise == 0.0
    table.record({"prune:x:0.5": 0.25, "prune:y:0.5": 0.1}, 0.04)
    table.record({"squeeze_excite:z:1": 0.05}, 0.02)
    assert table.measured == 3 and table.median_noise == pytest.approx(0.03)

    again = LatencyTable.open(DEVICE, "arch", tmp_path)
    assert again.missing(["prune:x:0.5", "prune:w:0.5"]) == ["prune:w:0.5"]
    assert again.saved == {"prune:x:0.5": 0.25, "prune:y:0.5": 0.1, "squeeze_excite:z:1": 0.05}
    assert again.noise == [0.04, 0.02] and again.measured == 0 and again.path == table.path
    other_device = LatencyTable.open({**DEVICE, "threads": 3}, "arch", tmp_path)
    assert other_device.missing(["prune:x:0.5"]) == ["prune:x:0.5"]
    assert other_device.path != again.path
    assert LatencyTable.open(DEVICE, "other architecture", tmp_path).saved == {}
    # A second architecture on the same device shares the file and keeps the first's.
    LatencyTable.open(DEVICE, "second", tmp_path).record({"prune:q:0.5": 0.3}, 0.01)
    assert LatencyTable.open(DEVICE, "arch", tmp_path).saved["prune:x:0.5"] == 0.25


def test_a_damaged_cache_file_is_an_empty_table_and_is_rewritten(tmp_path):
    table = LatencyTable.open(DEVICE, "arch", tmp_path)
    table.path.parent.mkdir(parents=True)
    table.path.write_text("{not json")
    assert LatencyTable.open(DEVICE, "arch", tmp_path).saved == {}
    table.record({"prune:x:0.5": 0.2}, 0.01)
    assert LatencyTable.open(DEVICE, "arch", tmp_path).saved == {"prune:x:0.5": 0.2}


def test_the_architecture_key_ignores_weights_and_sees_widths_size_and_batch():
    torch.manual_seed(0)
    a, b = nn.Conv2d(3, 8, 3), nn.Conv2d(3, 8, 3)
    assert not torch.equal(a.weight, b.weight)
    assert architecture_key(a, 32, 1) == architecture_key(b, 32, 1)
    assert architecture_key(a, 32, 1) != architecture_key(nn.Conv2d(3, 16, 3), 32, 1)
    assert architecture_key(a, 32, 1) != architecture_key(a, 64, 1)
    assert architecture_key(a, 32, 1) != architecture_key(a, 32, 8)


def test_a_set_saving_is_split_over_its_options_by_the_macs_they_remove():
    sets = {"prune:0.5": ["a", "b"], "squeeze_excite:1": ["g1", "g2"], "slower": ["c"]}
    shares = split_set_savings(sets, {"prune:0.5": 0.30, "squeeze_excite:1": 0.10,
                                      "slower": -0.02},
                               {"a": 0.15, "b": 0.05, "g1": 0.0, "g2": 0.0, "c": 0.1})
    # By MACs removed; evenly where none are removed; nothing from a set that measured slower.
    assert shares == pytest.approx({"a": 0.225, "b": 0.075, "g1": 0.05, "g2": 0.05, "c": 0.0})

"""The latency table's cache file is shared by the processes planning on one device (search
workers): what each records survives the others' writes."""

from __future__ import annotations

import json

from racing import ROUNDS, Race

from compress.planning.latency_table import LatencyTable

FINGERPRINT = {"cpu": "test", "threads": 1}

RECORD = """
import json
from compress.planning.latency_table import LatencyTable

directory, rounds = pathlib.Path(ARGS[0]), int(ARGS[1])
table = LatencyTable.open(json.loads(ARGS[2]), "arch", directory)
start()
for round in range(rounds):
    table.sets = {f"set{INDEX}": 0.5}
    table.record({f"worker{INDEX}:{round}": 0.01}, noise=0.001 * INDEX)
"""


def test_what_two_processes_record_in_one_table_all_survives(tmp_path):
    with Race(RECORD, tmp_path, ROUNDS, json.dumps(FINGERPRINT), folder=tmp_path):
        pass
    table = LatencyTable.open(FINGERPRINT, "arch", tmp_path)
    assert set(table.saved) == {f"worker{index}:{round}" for index in (0, 1)
                                for round in range(ROUNDS)}
    assert sorted(table.noise) == [0.0] * ROUNDS + [0.001] * ROUNDS
    assert table.sets == {"set0": 0.5, "set1": 0.5}
    assert [p.name for p in (tmp_path / "latency").iterdir()] == [table.path.name]


def test_a_table_takes_in_what_another_recorded_since_it_was_opened(tmp_path):
    first, second = (LatencyTable.open(FINGERPRINT, "arch", tmp_path) for _ in range(2))
    first.record({"a": 0.1}, noise=0.01)
    second.record({"b": 0.2}, noise=0.02)
    assert second.saved == {"a": 0.1, "b": 0.2} and second.noise == [0.01, 0.02]
    assert second.measured == 1
    assert LatencyTable.open(FINGERPRINT, "arch", tmp_path).saved == {"a": 0.1, "b": 0.2}

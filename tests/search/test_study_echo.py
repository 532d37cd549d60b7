"""A search with several worker processes hands their lines to the caller's `echo`, as a
search with one does: nothing is printed behind the caller's back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from compress.search.study import run_search


@dataclass
class _Section:
    minimize: str = "macs"
    sampler: str = "tpe"
    seed: int | None = 0


@dataclass
class _Job:  # the fields of a job that run_search and load_study read
    storage_url: str
    out_dir: Path
    study_name: str = "echo"
    trials: int = 2
    timeout: float | None = None
    workers: int = 2
    params: dict = field(default_factory=dict)
    section: _Section = field(default_factory=_Section)


def _objective(trial, job, echo) -> tuple[float, float]:
    echo(f"trial {trial.number} ran")
    return 0.5, 1.0


@pytest.mark.slow
def test_workers_send_their_lines_to_echo_not_to_stdout(tmp_path, capfd):
    job = _Job(f"sqlite:///{tmp_path / 'study.db'}", tmp_path)
    lines: list[str] = []
    run_search(job, echo=lines.append, objective=_objective)
    ran = [line for line in lines if line.endswith(" ran")]
    assert len(ran) >= 2, lines
    assert all(line.startswith(("[worker 0] trial ", "[worker 1] trial ")) for line in ran)
    assert "ran" not in capfd.readouterr().out

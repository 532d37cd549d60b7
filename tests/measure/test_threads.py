"""torch's thread count is the process's: library calls that need their own set it for
their work only and leave the caller's as it was."""

from __future__ import annotations

import pytest
import torch

from compress.measure.runtime import RunnerOptions
from compress.measure.threads import torch_threads
from compress.tools.bench import BenchOptions, bench_files


def _other_than(threads: int) -> int:
    return 1 if threads != 1 else 2


def test_torch_threads_hold_for_the_block_and_are_restored_however_it_ends():
    before = torch.get_num_threads()
    wanted = _other_than(before)
    with torch_threads(wanted):
        assert torch.get_num_threads() == wanted
    assert torch.get_num_threads() == before
    with pytest.raises(ZeroDivisionError), torch_threads(wanted):
        1 / 0
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_bench_of_a_checkpoint_leaves_torchs_thread_count_as_it_was(tiny_checkpoint):
    before = torch.get_num_threads()
    seen = []
    rows = bench_files(tiny_checkpoint, options=BenchOptions(
                           RunnerOptions(threads=_other_than(before)), batches=(1,), warmup=0,
                           runs=3, peak=False),
                       echo=lambda line: seen.append(torch.get_num_threads()),
                       note=lambda line: None)
    assert rows and rows[0].latency.provider.startswith("torch")
    assert set(seen) == {_other_than(before)}  # timed with the threads asked for
    assert torch.get_num_threads() == before

"""A bug in the timing process reaches its parent with the worker's own traceback: the
parent's traceback only shows where the answer was read."""

from __future__ import annotations

import pytest

from compress.errors import first_line
from compress.measure import timing_process
from compress.measure.runtime import RuntimeChoice


def test_a_bug_in_the_worker_is_raised_with_the_workers_traceback():
    worker = timing_process.TimingWorker()
    try:
        with pytest.raises(RuntimeError) as raised:
            worker.run([timing_process.Job("no_such_kind", [], {})],
                       RuntimeChoice("onnxruntime", "cpu", "cpu"), None)
        assert worker._process.poll() is None  # answered: the worker lives on
    finally:
        worker.close()
    message = str(raised.value)
    assert first_line(raised.value) == "KeyError: 'no_such_kind'"
    assert "Traceback (most recent call last)" in message
    assert "timing_process.py" in message and 'KINDS[job["kind"]]' in message

"""torch's thread count for one block of work.

`torch.set_num_threads` changes the whole process: a bench or a prediction that set it and
left it would slow (or oversubscribe) whatever its caller runs next, a notebook's training or
the pipeline's own timings. Work that needs a thread count of its own sets it here, for the
block only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` inside the block (None or 0: left as they
    are), and set back to what they were when it ends, however it ends."""
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)

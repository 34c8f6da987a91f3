"""Every test ends with the torch thread count it started with.

A training run chooses its own thread count from the load (mgiad/training/threads.py) and sets
it for the whole process; without this, a test that trains would leave e.g. 1 thread to the
tests after it, whose float32 tolerances hold at torch's default count (tests/test_fast_paths.py
failed that way after a run in tests/test_bad_input.py).
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)

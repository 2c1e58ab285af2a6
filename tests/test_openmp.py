"""Freeing a thread's idle OpenMP team (asymk_core.openmp), which keeps the live worker at full speed."""

from __future__ import annotations

import os
import sys
import time

import pytest
import torch

from asymk_talker.asymk_core.openmp import release_idle_team

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/task")


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _settled_threads(expected: int, seconds: float = 2.0) -> int:
    deadline = time.monotonic() + seconds
    while _os_threads() != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return _os_threads()


def test_release_frees_this_threads_idle_team_and_kernels_still_work():
    previous = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        values = torch.arange(1 << 20, dtype=torch.float32)
        expected = values * 2.0 + 1.0
        torch.testing.assert_close(values.mul(2.0).add_(1.0), expected)  # a parallel kernel: the team exists
        with_team = _os_threads()
        assert release_idle_team()
        assert _settled_threads(with_team - 2) == with_team - 2  # its 2 helper threads are gone
        torch.testing.assert_close(values.mul(2.0).add_(1.0), expected)  # and come back on demand
        assert _settled_threads(with_team) == with_team
    finally:
        torch.set_num_threads(previous)

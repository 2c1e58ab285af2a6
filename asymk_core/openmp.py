"""OpenMP thread teams and Python threads: keep a background generation thread at full speed.

PyTorch's CPU kernels run on OpenMP. Each Python thread that runs a parallel kernel gets its own
OpenMP team, which stays alive, idle, after its last kernel. GNU OpenMP (libgomp, the runtime
PyTorch's Linux wheels bundle) counts the threads of every team, and once they outnumber the CPUs
it all but stops spin-waiting between kernels, so each of the many small kernels of a transformer
step pays for waking its threads. On a 2-core machine, a worker thread that denoises while the
thread that loaded the model keeps its idle team ran half as fast (4 distilled steps of the
shipped model: 150 ms against 72 ms). :func:`release_idle_team` frees the calling thread's idle
team (OpenMP 5.0's ``omp_pause_resource_all``; PyTorch has no API for it); the team comes back
by itself the next time that thread runs a parallel kernel.
"""

from __future__ import annotations

import ctypes
import functools
import sys

OMP_PAUSE_SOFT = 1  # OpenMP 5.0: free the threads, keep what a later region can rebuild cheaply
RUNTIMES = ("libgomp", "libiomp5", "libomp")


@functools.lru_cache(maxsize=1)
def _pause_function():
    """``omp_pause_resource_all`` of the OpenMP runtime this process has loaded, or ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    import torch  # noqa: F401  (loads the runtime)

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if any(name in line for name in RUNTIMES)}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            function = getattr(ctypes.CDLL(path), "omp_pause_resource_all", None)
        except OSError:
            continue
        if function is not None:
            function.argtypes, function.restype = [ctypes.c_int], ctypes.c_int
            return function
    return None


def release_idle_team() -> bool:
    """Free the calling thread's idle OpenMP threads; ``True`` when the runtime did so.

    Call it from a thread that has run PyTorch kernels and is about to hand the work to another
    thread (e.g. before starting a generation worker). Harmless anywhere else: it does nothing
    inside a parallel region or without a runtime that supports it."""
    function = _pause_function()
    return function is not None and function(OMP_PAUSE_SOFT) == 0

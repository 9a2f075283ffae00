"""Fewer glibc malloc arenas for the operator process.

glibc gives each thread that allocates its own arena, up to eight per core, and each keeps the
memory it once held; the operator's handlers run on kopf's thread pool, so a busy operator's
resident memory was mostly arenas: 326-349 MiB settled at 500 models and 400 keys against
240 MiB with two (benchmarks/bench_operator_scale.py, README). Set here rather than in the image so
that every way of running the operator gets it; ``MALLOC_ARENA_MAX`` in the environment, which
glibc reads itself, still wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc's mallopt parameter number
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's arenas before the thread pool starts; False where there is no glibc (musl,
    macOS) or the environment already chose."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))

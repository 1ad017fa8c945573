"""Keep freed CPU memory in the process instead of handing it back to the kernel (glibc only).

Every training step and inference chunk allocates and frees the same few multi-megabyte tensors
(grid_sample's zero-filled gradient of the folded grids, decoder activations). glibc serves such
blocks with fresh ``mmap`` pages and unmaps them on free, so each step pays page faults and kernel
zeroing on first touch: on the 2-core test machine an 8 MB zero fill took 8 ms instead of ~1 ms.
Raising the mmap and trim thresholds lets the heap reuse those pages (measured: training step of the
train.json APMGSRN 0.14 s vs 0.16-0.20 s). Memory already returned stays returned; the cost is that
up to the threshold of freed heap memory stays mapped to this process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def keep_freed_memory(mmap_threshold: int = 64 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Once per process: raise glibc's mmap/trim thresholds; returns whether they were set."""
    global _done
    if _done:
        return True
    _done = True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))

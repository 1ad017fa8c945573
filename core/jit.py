"""Optional numba compilation for the CPU kernels (models/multigrid_cpu.py, renderer/composite_cpu.py).

:func:`compiler` gives the decorator every kernel uses, or None when numba is not installed or
``VOLSIGHT_NO_NUMBA`` is set; callers then keep their PyTorch paths. Kernels are compiled without
the GIL (``nogil``: they run on core/threads.py's workers), cached on disk, with bounds checks off
(each kernel keeps its indices in range itself) and with float contraction (FMA) as the only
fast-math licence: no assumptions about NaN or infinity, which the kernels' range tests rely on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def compiler() -> Callable[[Callable[..., Any]], Any] | None:
    """numba's ``njit`` with volsight's kernel settings, or None without numba."""
    if os.environ.get("VOLSIGHT_NO_NUMBA"):
        return None
    try:
        import numba
    except ImportError:
        return None
    return numba.njit(nogil=True, cache=True, fastmath={"contract"}, boundscheck=False, error_model="numpy")

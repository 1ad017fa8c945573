"""Run independent CPU network passes side by side, one single-threaded worker per core.

The Siamese networks here have 4–32 channels per layer: one convolution is too small to keep two
cores busy (oneDNN's threading overhead and the memory traffic between layers dominate), while a
single-threaded pass over one input reaches most of a core's matmul throughput. So the inputs
of a pair (or the volumes of a set) go to separate workers, each with one intra-op thread, and
the pool has as many workers as PyTorch has intra-op threads in the calling thread.

Autograd and inference modes are thread-local: ``fn`` runs under ``torch.inference_mode()`` in
the worker. Results are identical to running ``fn`` sequentially (the same kernels on the same
data; only which core runs them differs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _single_threaded() -> None:
    import torch

    torch.set_num_threads(1)


def workers() -> int:
    """How many inputs :func:`cpu_map` runs at once from this thread (PyTorch's intra-op thread count)."""
    import torch

    return max(1, int(torch.get_num_threads()))


def _executor(size: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != size:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(size, thread_name_prefix="volsight-cpu", initializer=_single_threaded)
            _pool_size = size
        return _pool


def cpu_map(fn: Callable[[Any], T], items: Sequence[Any]) -> list[T]:
    """``[fn(item) for item in items]`` with the items spread over single-threaded workers (in order).

    Falls back to a plain loop when there is one item or one thread, or when called from one of
    the workers itself (no nested pools).
    """
    import torch

    n = workers()

    def run(item: Any) -> T:
        with torch.inference_mode():
            return fn(item)

    if n < 2 or len(items) < 2 or threading.current_thread().name.startswith("volsight-cpu"):
        return [run(item) for item in items]
    return list(_executor(n).map(run, items))

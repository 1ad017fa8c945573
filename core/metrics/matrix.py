"""Distance matrices and distance-to-reference series, with progress and cancellation.

Learned metrics that offer ``embed(volumes, ...)`` / ``compare_embeddings(a, b)`` (VolSiM) run
**one forward pass per volume** and compare cached embeddings for every pair; all other metrics
fall back to one ``distance`` call per pair (half the pairs when the metric is symmetric).

Memory: the embedding cache of a 64³ volume is ~7.4 MB in float32 for the 3-scale VolSiM
(1.85 M values); when ``N`` embeddings would exceed ``max_cache_bytes`` (default 2 GiB) they are
stored in float16 (measured: distances differ by ~2e-5 relative) and pairs are compared in
blocks of ``block`` rows, so temporary memory stays at ``block`` embeddings.

With ``normalize=True`` (the learned default) a set is normalised with **one** affine map from
its joint min/max, so every volume's features can be reused; entries then equal
``distance(a, b, normalize=False)`` of the set-normalised volumes, which is what a comparison
across a set (or along a time series) wants: one value scale for all. Pair-normalised values
(``distance(a, b)``) can differ from them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from core.errors import MetricError
from core.metrics.base import Metric
from core.volume import Volume

Progress = Callable[[int, int], None]
CancelHook = Callable[[], bool]


class Cancelled(MetricError):
    """The computation was cancelled through its cancel hook."""


def _as_metric(metric: str | Metric, weights: Any = None) -> Metric:
    if isinstance(metric, Metric):
        return metric
    from core.metrics.registry import get_metric, metric_class

    cls = metric_class(metric)
    return get_metric(metric, weights=weights) if (cls.learned and weights is not None) else get_metric(metric)


def _embeddable(metric: Metric) -> bool:
    return callable(getattr(metric, "embed", None)) and callable(getattr(metric, "compare_embeddings", None))


def _check(cancelled: CancelHook | None) -> None:
    if cancelled is not None and cancelled():
        raise Cancelled("distance computation cancelled")


def _cache_dtype(metric: Metric, volumes: Sequence[Volume], max_cache_bytes: int):
    import torch

    per_volume = getattr(metric, "embedding_values", None)
    n_values = per_volume(volumes[0].shape) if callable(per_volume) else 4 * int(np.prod(volumes[0].shape))
    return torch.float32 if len(volumes) * n_values * 4 <= max_cache_bytes else torch.float16


def distance_matrix(
    volumes: Sequence[Volume],
    metric: str | Metric,
    *,
    weights: Any = None,
    progress: Progress | None = None,
    cancelled: CancelHook | None = None,
    max_cache_bytes: int = 2 << 30,
    block: int = 8,
    **options: Any,
) -> np.ndarray:
    """``[N, N]`` matrix of ``metric`` over ``volumes`` (``progress(done, total)``; ``cancelled()`` stops it)."""
    m = _as_metric(metric, weights)
    n = len(volumes)
    if n == 0:
        return np.zeros((0, 0))
    if _embeddable(m):
        dtype = _cache_dtype(m, volumes, max_cache_bytes)
        pairs = n * (n - 1) // 2
        total = n + pairs

        def embed_progress(done: int, _n: int) -> None:
            if progress is not None:
                progress(done, total)

        emb = m.embed(volumes, dtype=dtype, progress=embed_progress, cancelled=cancelled, **options)
        out = np.zeros((n, n))
        done = n
        for i in range(n - 1):
            for j0 in range(i + 1, n, block):
                _check(cancelled)
                j1 = min(n, j0 + block)
                d = m.compare_embeddings([e[i : i + 1] for e in emb], [e[j0:j1] for e in emb])
                out[i, j0:j1] = d
                out[j0:j1, i] = d
                done += j1 - j0
                if progress is not None:
                    progress(done, total)
        return out
    symmetric = bool(getattr(m, "symmetric", True))
    idx = [(i, j) for i in range(n) for j in range(n) if (j >= i if symmetric else True)]
    out = np.zeros((n, n))
    for k, (i, j) in enumerate(idx):
        _check(cancelled)
        value = m.distance(volumes[i], volumes[j], **options).value
        out[i, j] = value
        if symmetric:
            out[j, i] = value
        if progress is not None:
            progress(k + 1, len(idx))
    return out


def distance_to_reference(
    volumes: Sequence[Volume],
    metric: str | Metric,
    reference: int | Volume = 0,
    *,
    weights: Any = None,
    progress: Progress | None = None,
    cancelled: CancelHook | None = None,
    **options: Any,
) -> np.ndarray:
    """``[N]`` distances of every volume (e.g. time steps) to ``reference`` (an index or a Volume)."""
    m = _as_metric(metric, weights)
    if isinstance(reference, Volume):
        ref, items, ref_index = reference, list(volumes), None
    else:
        if not -len(volumes) <= int(reference) < len(volumes):
            raise MetricError(f"reference index {reference} is outside the {len(volumes)} volumes")
        ref_index = int(reference) % len(volumes)
        ref, items = volumes[ref_index], list(volumes)
    if _embeddable(m):
        everything = items if ref_index is not None else [*items, ref]
        emb = m.embed(everything, progress=progress, cancelled=cancelled, **options)
        r = ref_index if ref_index is not None else len(items)
        return np.asarray(m.compare_embeddings([e[r : r + 1] for e in emb], [e[: len(items)] for e in emb]))
    out = np.zeros(len(items))
    for k, v in enumerate(items):
        _check(cancelled)
        out[k] = m.distance(v, ref, **options).value
        if progress is not None:
            progress(k + 1, len(items))
    return out

"""Distance matrices and distance-to-reference series, with progress and cancellation.

Learned metrics that offer ``embed(volumes, ...)`` / ``compare_embeddings(a, b)`` (VolSiM) run
**one forward pass per volume** and compare cached embeddings for every pair; all other metrics
fall back to one ``distance`` call per pair (half the pairs when the metric is symmetric).

Pairs are compared on the cached embeddings through per-channel Gram products in float64
(``pairwise_distances``: ``|a|^2 + |b|^2 - 2 a.b``; equal to the pair results to
~1e-7 relative), accumulated over column chunks, so no pair difference is ever materialised.

Memory: the embedding cache of a 64³ volume is ~7.4 MB in float32 for the 3-scale VolSiM
(1.85 M values). When ``N`` embeddings would exceed ``max_cache_bytes`` (default 2 GiB) they are
stored in float16 (measured: distances differ by ~2e-5 relative); when even that does not fit,
the set is split into groups of which two are held at a time (each group pair re-embeds its
column group: more forward passes, bounded memory).

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


def set_scaling(metric: Metric, volumes: Sequence[Volume],
                options: dict[str, Any]) -> tuple[Callable[[Volume], Volume], dict[str, Any]]:
    """How each member of a set goes to a pair-wise ``metric`` so that all pairs share the set's value scale.

    Returns ``(prepare, options)``. A metric that min-max normalises each pair (``input_range``,
    with ``normalize`` on) gets every volume mapped with the **set's** bounds onto that range and
    ``normalize=False`` (vector volumes as their magnitudes first where the metric compares those); a
    metric with a ``data_range`` option (PSNR, SSIM) gets the set's range.
    Otherwise nothing changes. A pair's own bounds would give every pair its own scale: along a
    sequence, one noisy frame's extreme value would rescale just its own distance.
    """
    from core.metrics.preprocess import apply_affine, minmax_affine
    from core.metrics.volsim import set_bounds

    def unchanged(v: Volume) -> Volume:
        return v

    normalize = options.get("normalize")
    normalize = metric.normalizes_by_default if normalize is None else bool(normalize)
    if metric.input_range is not None and normalize and volumes:
        # a metric that takes a vector volume's magnitude before normalising gets the magnitudes' bounds
        scalar = metric.compares_magnitudes and any(v.channels > 1 for v in volumes)
        if scalar:  # one magnitude at a time: a long series of vector volumes need not all be held twice
            ranges = [v.scalar().value_range() for v in volumes]
            lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
        else:
            lo, hi = set_bounds(volumes, per_channel=metric.input_per_channel)
        scale, shift = minmax_affine(np.asarray(lo), np.asarray(hi), metric.input_range)

        def prepare(v: Volume) -> Volume:
            v = v.scalar() if scalar else v
            return v.evolve(data=apply_affine(v.data, scale, shift).numpy())

        return prepare, {**options, "normalize": False}
    if "data_range" in getattr(metric, "options", ()) and options.get("data_range") is None and volumes:
        lo, hi = set_bounds(volumes)
        if hi > lo:
            return unchanged, {**options, "data_range": hi - lo}
    return unchanged, options


def _check(cancelled: CancelHook | None) -> None:
    if cancelled is not None and cancelled():
        raise Cancelled("distance computation cancelled")


def _plan(metric: Metric, volumes: Sequence[Volume], max_cache_bytes: int):
    """(cache dtype, group size): float32 if all embeddings fit, else float16, else groups of float16."""
    import torch

    per_volume = getattr(metric, "embedding_values", None)
    n_values = per_volume(volumes[0].shape) if callable(per_volume) else 4 * int(np.prod(volumes[0].shape))
    n = len(volumes)
    if n * n_values * 4 <= max_cache_bytes:
        return torch.float32, n
    if n * n_values * 2 <= max_cache_bytes:
        return torch.float16, n
    return torch.float16, max(1, max_cache_bytes // (2 * n_values * 2))  # two groups in memory at once


def _cross(m: Metric, rows: list[Any], cols: list[Any] | None, cancelled: CancelHook | None, block: int) -> np.ndarray:
    """Distances between two embedded groups (``cols=None``: a group with itself)."""
    if callable(getattr(m, "pairwise_distances", None)):
        return np.asarray(m.pairwise_distances(rows, cols, cancelled=cancelled))
    other = rows if cols is None else cols
    n_r, n_k = rows[0].shape[0], other[0].shape[0]
    out = np.zeros((n_r, n_k))
    for i in range(n_r):
        for j0 in range(0, n_k, block):
            _check(cancelled)
            j1 = min(n_k, j0 + block)
            out[i, j0:j1] = m.compare_embeddings([e[i : i + 1] for e in rows], [e[j0:j1] for e in other])
    return out


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
        return _embedded_matrix(m, volumes, progress, cancelled, max_cache_bytes, block, options)
    symmetric = bool(getattr(m, "symmetric", True))
    idx = [(i, j) for i in range(n) for j in range(n) if (j >= i if symmetric else True)]
    prepare, options = set_scaling(m, volumes, options)
    out = np.zeros((n, n))
    for k, (i, j) in enumerate(idx):
        _check(cancelled)
        value = m.distance(prepare(volumes[i]), prepare(volumes[j]), **options).value
        out[i, j] = value
        if symmetric:
            out[j, i] = value
        if progress is not None:
            progress(k + 1, len(idx))
    return out


def _embedded_matrix(m: Metric, volumes: Sequence[Volume], progress: Progress | None, cancelled: CancelHook | None,
                     max_cache_bytes: int, block: int, options: dict[str, Any]) -> np.ndarray:
    n = len(volumes)
    dtype, group = _plan(m, volumes, max_cache_bytes)
    starts = list(range(0, n, group))
    if len(starts) > 1 and options.get("normalize", True):
        from core.metrics.volsim import set_bounds

        options = {**options, "bounds": set_bounds(volumes)}  # one affine map for every group
    embeddings = n if len(starts) == 1 else len(starts) + len(starts) * (len(starts) - 1) // 2
    total = embeddings + len(starts) * (len(starts) + 1) // 2
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    def embed(i0: int) -> list[Any]:
        nonlocal done
        part = volumes[i0 : i0 + group]
        if len(starts) > 1:
            emb = m.embed(part, dtype=dtype, cancelled=cancelled, **options)
            step()
            return emb
        report = None if progress is None else (lambda k, _n: progress(k, total))
        emb = m.embed(part, dtype=dtype, progress=report, cancelled=cancelled, **options)
        done = n
        return emb

    out = np.zeros((n, n))
    for gi, i0 in enumerate(starts):
        rows = embed(i0)
        i1 = min(n, i0 + group)
        out[i0:i1, i0:i1] = _cross(m, rows, None, cancelled, block)
        step()
        for j0 in starts[gi + 1 :]:
            _check(cancelled)
            cols = embed(j0)
            j1 = min(n, j0 + group)
            d = _cross(m, rows, cols, cancelled, block)
            out[i0:i1, j0:j1] = d
            out[j0:j1, i0:i1] = d.T
            step()
            del cols
        del rows
    np.fill_diagonal(out, 0.0)
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
    prepare, options = set_scaling(m, items if ref_index is not None else [*items, ref], options)
    ref = prepare(ref)
    out = np.zeros(len(items))
    for k, v in enumerate(items):
        _check(cancelled)
        out[k] = m.distance(prepare(v), ref, **options).value
        if progress is not None:
            progress(k + 1, len(items))
    return out

"""Applying 2D image metrics (LSiM, Watson) to 3D volumes slice by slice, and to rendered images.

A 2D metric has no single natural answer on a volume, so the caller chooses: ``axis`` is the
spatial axis the slices are perpendicular to (0 = z, 1 = y, 2 = x of ``[C, D, H, W]``) or
``"all"`` for all three; ``stride`` keeps every ``stride``-th slice (starting at index 0).
Without a choice a 2D metric raises :class:`~core.errors.MetricError` instead of guessing.

Aggregation (the one VolSiM's paper uses for its slice-wise LSIM2D baseline): the distance of
a volume pair is the **mean over all evaluated slice pairs**, pooled over the chosen axes (for
a cube with ``axis="all"`` that is the mean of the three per-axis means; for a non-cubic volume
each axis counts with its number of slices). Per-scale contributions and raw terms are averaged
the same way, so the contributions still sum to the value. Each slice pair is preprocessed on
its own (its own min-max normalisation), so the result does not depend on how slices are
batched.

Rendered images (``renderer.offline.render_offline`` gives ``[H, W, 4]`` uint8) and plain 2D
arrays go through :func:`image_array`, which returns channel-first float32 ``[C, H, W]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import MetricError

AXIS_NAMES = ("z", "y", "x")
_AXIS_ALIASES = {"z": 0, "y": 1, "x": 2, "0": 0, "1": 1, "2": 2}

# evaluates a batch of slice pairs [N, C, h, w] -> (values [N], contributions {scale: [N]}, terms {scale: [N]})
SliceBatchFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, Mapping[str, np.ndarray], Mapping[str, np.ndarray]]]


def parse_axes(axis: Any, metric: str = "2D metric") -> tuple[int, ...]:
    """The spatial axes to slice along: ``0|1|2``, ``'z'|'y'|'x'`` or ``'all'``; ``None`` is an error."""
    if axis is None:
        raise MetricError(
            f"{metric} is a 2D metric: on 3D volumes choose how to slice them with axis=0|1|2 (z, y, x) or "
            "axis='all' (mean over the slices of all three axes), or compare rendered images instead"
        )
    if isinstance(axis, str):
        key = axis.strip().lower()
        if key == "all":
            return (0, 1, 2)
        if key in _AXIS_ALIASES:
            return (_AXIS_ALIASES[key],)
    elif isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) and int(axis) in (0, 1, 2):
        return (int(axis),)
    elif isinstance(axis, (tuple, list)) and axis:
        out: list[int] = []
        for item in axis:
            for ax in parse_axes(item, metric):
                if ax not in out:
                    out.append(ax)
        return tuple(out)
    raise MetricError(f"{metric}: slice axis must be 0, 1, 2, 'z', 'y', 'x' or 'all', got {axis!r}")


def axes_with_room(axis: Any, axes: tuple[int, ...], shape: tuple[int, ...], min_size: int,
                   metric: str = "2D metric") -> tuple[tuple[int, ...], str]:
    """The chosen ``axes`` whose slices of a ``[D, H, W]`` grid are at least ``min_size`` on both sides, and
    a note naming the dropped ones ('' when none).

    Only ``axis='all'`` drops axes (a slab 6 voxels thin is compared on its 128×128 planes, not on 6×128
    strips a metric cannot take); an axis named on its own that has no room stays an error of the metric."""
    if not (isinstance(axis, str) and axis.strip().lower() == "all"):
        return axes, ""
    def plane(ax: int) -> tuple[int, ...]:
        return tuple(int(n) for i, n in enumerate(shape) if i != ax)

    kept = tuple(ax for ax in axes if min(plane(ax)) >= min_size)
    if not kept:
        raise MetricError(f"{metric}: no axis of a {'×'.join(map(str, shape))} grid has slices of at least "
                          f"{min_size}×{min_size}")
    dropped = [ax for ax in axes if ax not in kept]
    if not dropped:
        return kept, ""
    what = ", ".join(f"{AXIS_NAMES[ax]} ({'×'.join(map(str, plane(ax)))})" for ax in dropped)
    return kept, f"slices along {what} are smaller than {min_size}×{min_size}: left out"


def slice_indices(n: int, stride: int = 1) -> np.ndarray:
    """Indices of the slices kept along an axis of length ``n``: every ``stride``-th from 0."""
    if isinstance(stride, bool) or int(stride) != stride or int(stride) < 1:
        raise MetricError(f"slice stride must be a positive integer, got {stride!r}")
    return np.arange(0, int(n), int(stride))


def volume_slices(data: np.ndarray, axis: int, indices: np.ndarray | None = None) -> np.ndarray:
    """Slices ``[N, C, h, w]`` of ``data [C, D, H, W]`` perpendicular to spatial ``axis``."""
    if data.ndim != 4:
        raise MetricError(f"expected volume data [C, D, H, W], got shape {data.shape}")
    idx = np.arange(data.shape[axis + 1]) if indices is None else np.asarray(indices)
    taken = np.take(data, idx, axis=axis + 1)  # [C, ..N.., ., .]
    return np.ascontiguousarray(np.moveaxis(taken, axis + 1, 0), dtype=np.float32)


def middle_slice(data: np.ndarray, axis: int) -> np.ndarray:
    """The middle slice ``[C, h, w]`` perpendicular to ``axis`` (index ``n // 2``)."""
    return volume_slices(data, axis, np.array([data.shape[axis + 1] // 2]))[0]


def image_array(image: Any, name: str = "image") -> np.ndarray:
    """A 2D image as channel-first float32 ``[C, H, W]`` with C = 1 or 3.

    Accepts ``[H, W]`` (gray), ``[C, H, W]`` with C in (1, 3), and channel-last renders
    ``[H, W, 3]`` / ``[H, W, 4]`` (alpha dropped; uint8 stays on its 0-255 scale, which the
    metrics' own min-max normalisation removes).
    """
    arr = np.asarray(image)
    if arr.dtype.kind not in "fiub":
        raise MetricError(f"{name}: image must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3:
        if arr.shape[0] in (1, 3) and arr.shape[-1] not in (3, 4):
            pass
        elif arr.shape[-1] in (3, 4):
            arr = np.moveaxis(arr[..., :3], -1, 0)
        elif arr.shape[-1] == 1:
            arr = np.moveaxis(arr, -1, 0)
        elif arr.shape[0] not in (1, 3):
            raise MetricError(
                f"{name}: cannot tell the channel axis of shape {arr.shape}; pass [C, H, W] with C = 1 or 3, "
                "[H, W] or a render [H, W, 3|4]"
            )
    else:
        raise MetricError(f"{name}: expected a 2D image [H, W], [C, H, W] or [H, W, 3|4], got shape {arr.shape}")
    if min(arr.shape[1:]) < 2:
        raise MetricError(f"{name}: image of shape {arr.shape[1:]} is too small")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise MetricError(f"{name}: image contains NaN/Inf values")
    return arr


@dataclass(frozen=True)
class SlicedResult:
    """Aggregate of a 2D metric over the slices of a volume pair (means over slices)."""

    value: float
    contributions: dict[str, float]
    terms: dict[str, float]
    axes: tuple[int, ...]
    count: int
    per_axis: dict[str, float] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)  # per axis: the per-slice values

    def info(self, stride: int) -> dict[str, Any]:
        """Scalar facts for ``Distance.info``."""
        out: dict[str, Any] = {
            "slice_axes": ",".join(AXIS_NAMES[a] for a in self.axes),
            "slice_stride": int(stride),
            "slice_count": int(self.count),
            "slice_aggregation": "mean over all evaluated slice pairs",
        }
        for name, v in self.per_axis.items():
            out[f"mean_{name}"] = float(v)
        return out


def sliced_distance(
    evaluate: SliceBatchFn,
    a: np.ndarray,
    b: np.ndarray,
    axis: Any,
    stride: int = 1,
    batch_size: int = 16,
    metric: str = "2D metric",
) -> SlicedResult:
    """Run ``evaluate`` on batches of slice pairs of ``a``/``b`` ``[C, D, H, W]`` and average."""
    axes = parse_axes(axis, metric)
    if a.shape != b.shape:
        raise MetricError(f"{metric}: shapes differ ({a.shape} vs {b.shape})")
    if batch_size < 1:
        raise MetricError(f"{metric}: batch_size must be >= 1, got {batch_size}")
    all_values: list[np.ndarray] = []
    contrib_sum: dict[str, float] = {}
    term_sum: dict[str, float] = {}
    per_axis: dict[str, float] = {}
    per_axis_values: dict[str, np.ndarray] = {}
    for ax in axes:
        idx = slice_indices(a.shape[ax + 1], stride)
        axis_values = []
        for start in range(0, len(idx), batch_size):
            chunk = idx[start : start + batch_size]
            values, contribs, terms = evaluate(volume_slices(a, ax, chunk), volume_slices(b, ax, chunk))
            axis_values.append(np.asarray(values, dtype=np.float64).reshape(-1))
            for k, v in contribs.items():
                contrib_sum[k] = contrib_sum.get(k, 0.0) + float(np.sum(v, dtype=np.float64))
            for k, v in terms.items():
                term_sum[k] = term_sum.get(k, 0.0) + float(np.sum(v, dtype=np.float64))
        vals = np.concatenate(axis_values)
        per_axis[AXIS_NAMES[ax]] = float(vals.mean())
        per_axis_values[AXIS_NAMES[ax]] = vals
        all_values.append(vals)
    flat = np.concatenate(all_values)
    n = int(flat.size)
    return SlicedResult(
        value=float(flat.mean()),
        contributions={k: v / n for k, v in contrib_sum.items()},
        terms={k: v / n for k, v in term_sum.items()},
        axes=axes,
        count=n,
        per_axis=per_axis,
        values=per_axis_values,
    )


SLICE_OPTIONS = frozenset({"axis", "slice_axis", "stride", "slice_stride"})
RESAMPLE_OPTIONS = frozenset({"resample", "interpolation"})


def slice_options(metric: str, options: Mapping[str, Any], allowed: frozenset[str] | set[str]) -> tuple[Any, int]:
    """(axis, stride) from a 2D metric's options; unknown options raise :class:`MetricError`."""
    unknown = sorted(k for k in options if k not in allowed and k not in SLICE_OPTIONS and k not in RESAMPLE_OPTIONS)
    if unknown:
        raise MetricError(f"{metric}: unknown or unsupported option(s) {', '.join(unknown)}")
    axis = options.get("axis")
    if axis is None:
        axis = options.get("slice_axis")
    stride = options.get("stride")
    if stride is None:
        stride = options.get("slice_stride")
    return axis, 1 if stride is None else stride


def pair_data(metric: Any, a: Any, b: Any, options: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The pair's data ``[C, D, H, W]``; with ``resample=N`` (or ``(D, H, W)``) both are resampled first.

    Resampling uses the shared ``core.metrics.preprocess.resample`` (``interpolation``: linear
    (default), nearest or cubic); without it the shapes must agree (``metric.check_pair``).
    """
    size = options.get("resample")
    if size is None or size is False or size == 0:
        metric.check_pair(a, b)
        return a.data, b.data
    from core.metrics.preprocess import resample, working_size

    if a.channels != b.channels:
        raise MetricError(f"{metric.name}: channel counts differ ({a.channels} vs {b.channels})")
    if a.channels not in metric.channels:
        raise MetricError(f"{metric.name}: accepts {metric.channels} channel(s), got {a.channels}")
    shape = working_size(size, 3)
    interpolation = options.get("interpolation") or "linear"
    return (resample(a.data, shape, interpolation).numpy(), resample(b.data, shape, interpolation).numpy())

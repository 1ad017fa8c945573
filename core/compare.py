"""Compare two volumes with several metrics at once: the call behind the panels and ``volsight compare``."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import MetricError
from core.metrics.base import Distance, Metric
from core.volume import Volume

DEFAULT_METRICS = ("mse", "psnr", "ssim", "ncc", "maxerr")  # what :func:`compare` computes when none are named


def default_metrics() -> list[str]:
    """What ``volsight compare`` computes when no metric is named: MSE, PSNR, SSIM, NCC and Max error, and
    VolSiM when its default weights (volsight's own, or ``$VOLSIGHT_VOLSIM_WEIGHTS``) are installed."""
    from core.metrics.volsim import default_weights_path

    return [*DEFAULT_METRICS, *(["volsim"] if default_weights_path().is_file() else [])]


SHARED_OPTIONS = ("normalize", "resample", "interpolation")


def _describe_volume(v: Volume) -> dict[str, Any]:
    return {"name": v.name, "source": None if v.source is None else os.fspath(v.source),
            "shape": list(v.shape), "channels": v.channels}


def _json_number(x: float) -> float | str:
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf" if x < 0 else "nan")


@dataclass
class Comparison:
    """A pair of volumes and the Distance of each chosen metric."""

    a: Volume
    b: Volume
    distances: dict[str, Distance]
    options: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # metric -> why it gave no value (on_error="report")

    def value(self, metric: str) -> float:
        """The scalar of one metric."""
        return float(self.distances[metric].value)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (values, kinds, per-scale terms and contributions; no arrays)."""
        out = {}
        for name, d in self.distances.items():
            item = d.as_dict()
            item["value"] = _json_number(float(d.value))
            out[name] = item
        opts = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.options.items()}
        doc = {"a": _describe_volume(self.a), "b": _describe_volume(self.b), "options": opts, "distances": out}
        if self.errors:
            doc["errors"] = dict(self.errors)
        return doc

    def to_json(self, indent: int | None = 2) -> str:
        """The comparison as JSON text."""
        return json.dumps(self.as_dict(), indent=indent)

    def to_csv(self) -> str:
        """One row per metric (scale empty) and one per scale of multiscale metrics; a metric that failed is a
        row of kind ``error`` with the reason in the last column."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["a", "b", "metric", "kind", "scale", "value", "term", "contribution"])
        for name, d in self.distances.items():
            w.writerow([self.a.name, self.b.name, name, d.kind, "", repr(float(d.value)), "", ""])
            for scale, term in d.terms.items():
                w.writerow([self.a.name, self.b.name, name, d.kind, scale, "", repr(float(term)),
                            repr(float(d.contributions.get(scale, 0.0)))])
        for name, why in self.errors.items():
            w.writerow([self.a.name, self.b.name, name, "error", "", "", "", why])
        return buf.getvalue()


def _as_volume(x: Volume | str | os.PathLike) -> Volume:
    if isinstance(x, Volume):
        return x
    from core.io.registry import read_volume

    return read_volume(x)


def resolve_weights(weights: str | os.PathLike | Mapping[str, Any] | None, names: Sequence[str]) -> dict[str, Any]:
    """Map ``--weights`` (one path, or ``{metric: path}``) onto the learned metrics among ``names``."""
    from core.metrics.registry import metric_class

    if weights is None:
        return {}
    learned = [n for n in names if metric_class(n).learned]
    if isinstance(weights, Mapping):
        unknown = [k for k in weights if k not in names]
        if unknown:
            raise MetricError(f"weights given for metric(s) not compared: {', '.join(unknown)}")
        return dict(weights)
    if len(learned) != 1:
        raise MetricError(
            f"--weights PATH needs exactly one learned metric among {', '.join(names)} (found {len(learned)}); "
            "use --weights NAME=PATH for each"
        )
    return {learned[0]: weights}


def build_metrics(names: Sequence[str], weights: Any = None) -> dict[str, Metric]:
    """Construct the named metrics (learned ones load their weights now; errors name the file)."""
    from core.metrics.registry import get_metric, metric_class

    clean = [n.strip().lower() for n in names if n.strip()]
    if not clean:
        raise MetricError("no metric named")
    per_metric = resolve_weights(weights, clean)
    out: dict[str, Metric] = {}
    for n in clean:
        metric_class(n)  # unknown names fail before anything heavy is loaded
    for n in clean:
        out[n] = get_metric(n, weights=per_metric[n]) if n in per_metric else get_metric(n)
    return out


def compare(
    a: Volume | str | os.PathLike,
    b: Volume | str | os.PathLike,
    metrics: Sequence[str] | Mapping[str, Metric] = DEFAULT_METRICS,
    features: bool = False,
    *,
    weights: Any = None,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    region: Any = None,
    on_error: str = "raise",
    **options: Any,
) -> Comparison:
    """Distances between ``a`` and ``b`` for each metric.

    ``options`` shared by all metrics: ``normalize`` (None = each metric's default), ``resample``,
    ``interpolation``; per-metric options (``data_range``, ``window``, ...) go in
    ``metric_options={name: {...}}``. ``weights``: one path for the single learned metric, or
    ``{name: path}``. ``features=True`` keeps learned metrics' feature maps in each Distance.
    ``region``: compare only this box of A's voxels (a :data:`core.region.Region` or its text
    ``"z0:z1,y0:y1,x0:x1"``); B is resampled onto A's grid first when the grids differ.

    A network that takes only some grid sizes (VolSiM: every axis a multiple of 4) and is given no
    ``resample`` compares a pair on another grid on the nearest one it takes (:func:`fitted_grid`),
    and says so in its Distance's ``info["resampled_to"]``, rather than failing the whole comparison.

    ``on_error``: ``"raise"`` (default) lets a metric's MetricError end the comparison; ``"report"``
    keeps the other metrics' values and records the reason in ``Comparison.errors`` (a metric that
    cannot take the pair, say SSIM on a slab thinner than its window).
    """
    if on_error not in ("raise", "report"):
        raise MetricError(f"compare: on_error is 'raise' or 'report', got {on_error!r}")
    unknown = set(options) - set(SHARED_OPTIONS)
    if unknown:
        raise MetricError(f"compare: unknown option(s) {', '.join(sorted(unknown))}; per-metric options go in "
                          "metric_options")
    va, vb = _as_volume(a), _as_volume(b)
    built = dict(metrics) if isinstance(metrics, Mapping) else build_metrics(list(metrics), weights)
    shared = {k: v for k, v in options.items() if v is not None}
    if region is not None:
        from core.region import crop_pair, format_region, parse_region

        box = parse_region(region, va.shape) if isinstance(region, str) else region
        grid = va.shape
        va, vb = crop_pair(va, vb, box, shared.get("interpolation", "linear"))
        size = shared.get("resample")
        if size is not None and tuple(size if isinstance(size, Sequence) else (size,) * 3) == grid:
            del shared["resample"]  # it only asked for A's grid, which both crops are on now
        shared["region"] = format_region(box)
    per = dict(metric_options or {})
    distances: dict[str, Distance] = {}
    errors: dict[str, str] = {}
    for name, metric in built.items():
        opts = {k: v for k, v in {**shared, **per.get(name, {})}.items() if k != "region"}
        try:
            fitted = fitted_grid(metric, va, vb, opts)
            if fitted is not None:
                opts["resample"] = fitted
            d = metric.distance(va, vb, features=features and metric.learned, **opts)
        except MetricError as exc:
            if on_error == "raise":
                raise
            errors[name] = str(exc)
            continue
        if region is not None and "at" in d.info and fitted is None and "resample" not in opts:
            d.info["at"] = [int(i) + lo for i, (lo, _hi) in zip(d.info["at"], box, strict=True)]  # A's voxel
        distances[name] = noted_grid(d, fitted)
    return Comparison(va, vb, distances, options=shared, errors=errors)


def nearest_grid(metric: Metric, shape: Sequence[int]) -> tuple[int, ...] | None:
    """The nearest grid a network that only takes some sizes accepts (``metric.fitting_size``; VolSiM:
    multiples of 4) when ``shape`` is not one of them; else None."""
    fit = getattr(metric, "fitting_size", None)
    return None if fit is None else fit(tuple(shape))


def fitted_grid(metric: Metric, a: Volume, b: Volume, options: Mapping[str, Any]) -> tuple[int, ...] | None:
    """The grid ``metric`` compares ``a`` and ``b`` on instead of their own (:func:`nearest_grid`), when
    the two share a grid it does not take and ``options`` ask for no resampling; else None."""
    if options.get("resample") is not None or a.shape != b.shape:
        return None
    return nearest_grid(metric, a.shape)


def noted_grid(d: Distance, grid: Sequence[int] | None) -> Distance:
    """``d`` with ``info["resampled_to"]`` saying the grid it was computed on (when ``grid`` is given)."""
    if grid is None:
        return d
    from dataclasses import replace

    return replace(d, info={**d.info, "resampled_to": "×".join(str(n) for n in grid)})


def per_slice(values: Any, axis: int, rms: bool = False, summary: str = "mean") -> Any:
    """``values [D, H, W]`` summarised over every slice perpendicular to ``axis`` (0 = z, 1 = y, 2 = x):
    the mean (a metric's per-voxel map; ``summary="max"``: the largest value, as Max error's map sums
    up), or the root mean square (``rms``: a signed difference A − B). Returns float64 ``[n]``, one
    value per slice, the error-per-level curve of the pair."""
    import numpy as np

    d = np.asarray(values)
    if d.ndim != 3 or axis not in (0, 1, 2):
        raise MetricError(f"per_slice: need a [D, H, W] array and an axis 0, 1 or 2, got shape {d.shape}, axis {axis}")
    if summary not in ("mean", "max"):
        raise MetricError(f"per_slice: a slice sums up as its 'mean' or its 'max', not {summary!r}")
    if summary == "max" and not rms:
        return np.moveaxis(d, axis, 0).reshape(d.shape[axis], -1).max(axis=1).astype(np.float64)
    # a few slices at a time in float64: no whole-volume float64 copies (at 256³, two of 134 MB whose
    # first touch cost the window 0.7 s when a pair loaded)
    slices = np.moveaxis(d, axis, 0)
    n, per = slices.shape[0], slices[0].size
    step = max(1, (1 << 20) // max(1, per))
    sums = np.empty(n, dtype=np.float64)
    for i in range(0, n, step):
        chunk = slices[i:i + step].astype(np.float64)
        if rms:
            chunk *= chunk
        sums[i:i + step] = chunk.reshape(chunk.shape[0], -1).sum(axis=1)
    sums /= max(1, per)
    return np.sqrt(sums) if rms else sums


def per_slice_table(comparison: Comparison, axis: int) -> str:
    """CSV of the pair's per-slice curves along ``axis``: the RMS of A − B and the mean of every metric's
    per-voxel map (MSE, MAE, SSIM, LCC; Max error's: the largest), one row per slice."""
    import numpy as np

    from core.metrics.registry import metric_class

    a, b = comparison.a, comparison.b
    if a.shape != b.shape:
        raise MetricError(f"per-slice curves need one grid: {a.name} {a.shape} vs {b.name} {b.shape}")
    columns = {"rms_a_minus_b": per_slice(a.scalar().data[0] - b.scalar().data[0], axis, rms=True)}
    for name, d in comparison.distances.items():
        if d.voxel_map is not None and np.shape(d.voxel_map) == a.shape:
            columns[name] = per_slice(d.voxel_map, axis, summary=metric_class(name).map_summary)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["zyx"[axis], *columns])
    for i in range(a.shape[axis]):
        w.writerow([i, *(repr(float(c[i])) for c in columns.values())])
    return buf.getvalue()

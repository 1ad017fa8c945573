"""The comparison the distance panel shows, as plain functions (no Qt): which metrics exist, and the run.

Each metric runs through ``core.compare.compare`` (the same call ``volsight compare`` makes), one
metric at a time so progress can be reported and cancelled between metrics, and so one metric
failing (say, missing weights) leaves the others' numbers standing. A metric the engine does not
provide is reported as unavailable; nothing here makes numbers up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from core.errors import FeatureMemoryError, MetricError
from core.volume import Volume

if TYPE_CHECKING:
    import numpy as np

    from core.compare import Comparison

ProgressFn = Callable[[float | None, str], None]
DEFAULT_METRICS = ("mse", "psnr", "ssim", "ncc", "maxerr", "volsim", "lsim", "watson-dct", "learnsim-ssd")
_BUILT: dict[str, Any] = {}  # metric name -> built Metric (learned weights load once per session)
_WEIGHTS: dict[str, str] = {}  # metric name -> weights file chosen by the user


def metric_catalog() -> list[dict[str, Any]]:
    """Every registered metric's description (name, label, learned, voxel_map, ...)."""
    from core.metrics.registry import describe_metrics

    return describe_metrics()


def default_metrics(catalog: Iterable[Mapping[str, Any]] | None = None) -> list[str]:
    """The metrics shown by default: the usual classical and learned ones that are installed (a learned metric
    without weights, e.g. LSiM, only once weights are chosen for it; the Metrics button adds it any time)."""
    items = list(metric_catalog() if catalog is None else catalog)
    names = [m["name"] for m in items
             if m.get("weights_installed", True) or m["name"] in _WEIGHTS]
    chosen = [n for n in DEFAULT_METRICS if n in names]
    return chosen or names[:6]


def set_weights(name: str, path: str | None) -> None:
    """Use the weights file ``path`` for learned metric ``name`` (None: the metric's default)."""
    if path:
        _WEIGHTS[name] = str(path)
    else:
        _WEIGHTS.pop(name, None)
    _BUILT.pop(name, None)


def weights_of(name: str) -> str | None:
    return _WEIGHTS.get(name)


def built_metric(name: str) -> Any:
    """The Metric object for ``name``, built once (weights loaded once) and reused."""
    if name not in _BUILT:
        from core.compare import build_metrics

        weights = {name: _WEIGHTS[name]} if name in _WEIGHTS else None
        _BUILT[name] = build_metrics([name], weights)[name]
    return _BUILT[name]


def metric_options(name: str) -> dict[str, Any]:
    """Options the window passes for ``name``: 2D metrics (LSiM, Watson) run on slices along all three axes."""
    m = built_metric(name)
    if 3 not in tuple(getattr(m, "dims", (3,))):
        return {"axis": "all"}
    return {}


def window_options(name: str, shape: tuple[int, ...]) -> dict[str, Any]:
    """Options the window uses for ``name`` on volumes of ``shape``: 2D metrics slice along all three
    axes, and a network that only takes some grid sizes (VolSiM: multiples of 4) gets the nearest
    one (``resample``) instead of refusing the pair."""
    from core.compare import nearest_grid

    options = metric_options(name)
    fitted = nearest_grid(built_metric(name), shape)
    if fitted is not None:
        options["resample"] = fitted
    return options


def distance_of(a: Volume, b: Volume, metric: str, features: bool = False,
                resample: tuple[int, ...] | int | None = None, region: Any = None) -> Any:
    """One metric on one pair, the way ``volsight compare`` computes it (``resample``: a common grid size;
    ``region``: only this box of A's voxels)."""
    shared = {"resample": resample} if resample else {}
    from core.compare import compare, noted_grid
    from core.region import check_region

    m = built_metric(metric)
    shape = a.shape if region is None else tuple(hi - lo for lo, hi in check_region(region, a.shape))
    options = window_options(metric, shape)
    fitted = options.get("resample")
    result = compare(a, b, metrics={metric: m}, features=features, metric_options={metric: options}, region=region,
                     **shared)
    if metric not in result.distances:
        raise MetricError(f"{metric}: the comparison returned no value")
    return noted_grid(result.distances[metric], fitted)


def common_grid(a: Volume, b: Volume) -> tuple[int, int, int] | None:
    """The grid both volumes are resampled to when their shapes differ (A's), else None."""
    return None if a.shape == b.shape else a.shape


def compute_distances(a: Volume, b: Volume, metrics: list[str], features_for: Iterable[str] = (),
                      progress: ProgressFn | None = None, resample: tuple[int, ...] | None = None,
                      on_result: Callable[[str, Any], None] | None = None, region: Any = None) -> dict[str, Any]:
    """Each metric's Distance, or the exception it raised (shown in its table row).

    ``on_result(name, result)`` is called after each metric, so a window can show the fast ones
    while the slow ones still run.
    """
    from core.metrics.registry import metric_names

    known = set(metric_names())
    wanted_features = set(features_for)
    out: dict[str, Any] = {}
    for i, name in enumerate(metrics):
        if progress:
            progress(i / max(1, len(metrics)), f"computing {name} ({i + 1}/{len(metrics)})")
        if name not in known:
            out[name] = MetricError(f"{name}: not available (the metric is not installed)")
            continue
        try:
            try:
                out[name] = distance_of(a, b, name, features=name in wanted_features, resample=resample,
                                        region=region)
            except FeatureMemoryError as exc:  # too big to keep the maps: the value alone, and why
                out[name] = distance_of(a, b, name, features=False, resample=resample, region=region)
                out[name].info["features"] = str(exc)
        except MetricError as exc:
            out[name] = exc
        except Exception as exc:  # noqa: BLE001 - one metric's failure must not hide the others
            if type(exc).__name__ == "Cancelled":
                raise
            from core.errors import VolsightError

            out[name] = exc if isinstance(exc, VolsightError) else MetricError(f"{name}: {type(exc).__name__}: {exc}")
        if on_result is not None:
            on_result(name, out[name])
    if progress:
        progress(1.0, "comparison done")
    return out


def _split(results: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    ok = {k: d for k, d in results.items() if not isinstance(d, BaseException)}
    errors = {k: str(d) for k, d in results.items() if isinstance(d, BaseException)}
    return ok, errors


def comparison_of(results: Mapping[str, Any], a: Volume, b: Volume, region: Any = None) -> Comparison:
    """The Comparison of the metrics that worked (of the region's crops when there is one), with the others'
    errors."""
    from core.compare import Comparison

    ok, errors = _split(results)
    if region is None:
        return Comparison(a, b, ok, errors=errors)
    from core.region import crop_pair, format_region

    ca, cb = crop_pair(a, b, region)
    return Comparison(ca, cb, ok, options={"region": format_region(region)}, errors=errors)


def comparison_json(results: Mapping[str, Any], a: Volume, b: Volume, region: Any = None) -> str:
    """The CLI's JSON (``volsight compare --json``) for the computed metrics, plus the metrics that failed."""
    return comparison_of(results, a, b, region).to_json()


def comparison_csv(results: Mapping[str, Any], a: Volume, b: Volume, region: Any = None) -> str:
    """The CLI's CSV (``volsight compare --csv``) for the computed metrics; failed metrics as rows with an error."""
    return comparison_of(results, a, b, region).to_csv()


def signed_difference(a: Volume, b: Volume) -> np.ndarray:
    """A − B per voxel (magnitudes for vector data), ``[D, H, W]``; the difference view's fallback."""
    if a.shape != b.shape:
        raise MetricError(f"shapes differ ({a.name} {a.shape} vs {b.name} {b.shape}); no per-voxel difference")
    return a.scalar().data[0] - b.scalar().data[0]

"""The comparison the distance panel shows, as plain functions (no Qt): which metrics exist, and the run.

Each metric runs through ``core.compare.compare`` (the same call ``volsight compare`` makes), one
metric at a time so progress can be reported and cancelled between metrics, and so one metric
failing (say, missing weights) leaves the others' numbers standing. A metric the engine does not
provide is reported as unavailable; nothing here makes numbers up.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from core.errors import MetricError
from core.volume import Volume

ProgressFn = Callable[[float | None, str], None]
DEFAULT_METRICS = ("mse", "psnr", "ssim", "ncc", "volsim", "lsim", "watson_dct", "learnsim_ssd")


def _optional(module: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None


def metric_catalog() -> list[dict[str, Any]]:
    """Every registered metric's description (name, label, learned, voxel_map, ...)."""
    from core.metrics.registry import describe_metrics

    return describe_metrics()


def default_metrics(catalog: Iterable[Mapping[str, Any]] | None = None) -> list[str]:
    """The metrics shown by default: the usual classical and learned ones that are installed."""
    names = [m["name"] for m in (metric_catalog() if catalog is None else catalog)]
    chosen = [n for n in DEFAULT_METRICS if n in names]
    return chosen or names[:6]


def distance_of(a: Volume, b: Volume, metric: str, features: bool = False) -> Any:
    """One metric on one pair, the way ``volsight compare`` computes it."""
    compare_mod = _optional("core.compare")
    if compare_mod is not None:
        result = compare_mod.compare(a, b, metrics=[metric], features=features)
        distances = result.distances
        if metric not in distances:
            raise MetricError(f"{metric}: the comparison returned no value")
        return distances[metric]
    from core.metrics.registry import get_metric

    return get_metric(metric).distance(a, b, features=features)


def compute_distances(a: Volume, b: Volume, metrics: list[str], features_for: Iterable[str] = (),
                      progress: ProgressFn | None = None) -> dict[str, Any]:
    """Each metric's Distance, or the exception it raised (shown in its table row)."""
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
            out[name] = distance_of(a, b, name, features=name in wanted_features)
        except MetricError as exc:
            out[name] = exc
        except Exception as exc:  # noqa: BLE001 - one metric's failure must not hide the others
            if type(exc).__name__ == "Cancelled":
                raise
            from core.errors import VolsightError

            out[name] = exc if isinstance(exc, VolsightError) else MetricError(f"{name}: {type(exc).__name__}: {exc}")
    if progress:
        progress(1.0, "comparison done")
    return out


def comparison_records(results: Mapping[str, Any], a_name: str, b_name: str) -> list[dict[str, Any]]:
    """One flat record per metric: value, kind, error (for CSV/JSON export and copying)."""
    rows = []
    for name, d in results.items():
        if isinstance(d, BaseException):
            rows.append({"a": a_name, "b": b_name, "metric": name, "value": None, "kind": "", "error": str(d)})
        else:
            rows.append({"a": a_name, "b": b_name, "metric": name, "value": float(d.value), "kind": d.kind,
                         "error": "", "contributions": {k: float(v) for k, v in d.contributions.items()}})
    return rows


def comparison_json(results: Mapping[str, Any], a_name: str, b_name: str) -> str:
    """JSON text: the pair and every metric's value, per-scale contributions and errors."""
    doc = {"a": a_name, "b": b_name, "distances": {}, "errors": {}}
    for name, d in results.items():
        if isinstance(d, BaseException):
            doc["errors"][name] = str(d)
        else:
            doc["distances"][name] = d.as_dict()
    return json.dumps(doc, indent=2)


def comparison_csv(results: Mapping[str, Any], a_name: str, b_name: str) -> str:
    """CSV text: a, b, metric, value, kind, error (one row per metric)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["a", "b", "metric", "value", "kind", "error"])
    for r in comparison_records(results, a_name, b_name):
        w.writerow([r["a"], r["b"], r["metric"], "" if r["value"] is None else repr(r["value"]), r["kind"],
                    r["error"]])
    return buf.getvalue()


def signed_difference(a: Volume, b: Volume):
    """A − B per voxel (magnitudes for vector data), ``[D, H, W]``; the difference view's fallback."""
    if a.shape != b.shape:
        raise MetricError(f"shapes differ ({a.name} {a.shape} vs {b.name} {b.shape}); no per-voxel difference")
    return a.scalar().data[0] - b.scalar().data[0]

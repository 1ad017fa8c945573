"""Metrics: one registry, one shape (``distance(a, b) -> Distance``), classical and learned."""

from core.metrics.base import Distance, Metric, ScaleFeatures
from core.metrics.registry import describe_metrics, get_metric, metric_class, metric_names, register

__all__ = [
    "Distance",
    "Metric",
    "ScaleFeatures",
    "describe_metrics",
    "get_metric",
    "metric_class",
    "metric_names",
    "register",
]

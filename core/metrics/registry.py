"""Metric registry: metrics are registered by name and built on request (learned ones load weights then)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from core.errors import MetricError
from core.metrics.base import Metric

_FACTORIES: dict[str, type[Metric] | Callable[..., Metric]] = {}
_CLASSES: dict[str, type[Metric]] = {}

# modules that register metrics when imported (missing ones are skipped)
_BUILTIN_MODULES = (
    "core.metrics.classical",
    "core.metrics.volsim",
    "core.metrics.lsim",
    "core.metrics.watson",
    "core.metrics.learnsim",
)
_loaded = False


def register(cls: type[Metric]) -> type[Metric]:
    """Class decorator: register a Metric subclass under ``cls.name``."""
    if cls.name in _CLASSES and _CLASSES[cls.name] is not cls:
        raise MetricError(f"metric name {cls.name!r} registered twice")
    _CLASSES[cls.name] = cls
    _FACTORIES[cls.name] = cls
    return cls


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def metric_names() -> list[str]:
    _load_builtins()
    return list(_CLASSES)


def metric_class(name: str) -> type[Metric]:
    _load_builtins()
    key = name.strip().lower()
    if key not in _CLASSES:
        raise MetricError(f"unknown metric {name!r}; available: {', '.join(_CLASSES)}")
    return _CLASSES[key]


def get_metric(name: str, **kwargs: Any) -> Metric:
    """Build the metric ``name``; ``kwargs`` go to its constructor (e.g. ``weights=PATH``)."""
    return metric_class(name)(**kwargs)


def describe_metrics() -> list[dict[str, Any]]:
    _load_builtins()
    return [cls.describe() for cls in _CLASSES.values()]

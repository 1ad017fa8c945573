"""Model types by name and their size presets."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from core.errors import VolsightError
from models.apmgsrn import APMGSRN, APMGSRN_SIZES
from models.baselines import FVSRN, FVSRN_SIZES, HASHGRID_SIZES, HashGridField

MODEL_CLASSES: dict[str, type] = {"apmgsrn": APMGSRN, "fvsrn": FVSRN, "hashgrid": HashGridField}
MODEL_SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "apmgsrn": APMGSRN_SIZES, "fvsrn": FVSRN_SIZES, "hashgrid": HASHGRID_SIZES,
}


def model_config(model: str, size: str = "medium", **overrides: Any) -> dict[str, Any]:
    """The configuration of ``model`` at ``size`` (small | medium | large) with ``overrides`` applied."""
    if model not in MODEL_CLASSES:
        raise VolsightError(f"unknown model {model!r}; choose one of {sorted(MODEL_CLASSES)}")
    sizes = MODEL_SIZES[model]
    if size not in sizes:
        raise VolsightError(f"unknown size {size!r} for {model}; choose one of {list(sizes)}")
    return {**MODEL_CLASSES[model].default_config, **sizes[size], **overrides}


@lru_cache(maxsize=64)
def parameter_count(model: str, size: str = "medium", channels: int = 1) -> int:
    """Trainable parameters of ``model`` at ``size`` for data with ``channels`` channels (what a fit stores)."""
    field = MODEL_CLASSES[model](model_config(model, size), channels=channels, value_range=(0.0, 1.0))
    return int(sum(p.numel() for p in field.parameters()))


def largest_compressing_size(model: str, values: int, channels: int = 1) -> str | None:
    """The largest preset of ``model`` with no more parameters than ``values`` (None when none is)."""
    fitting = [s for s in MODEL_SIZES[model] if parameter_count(model, s, channels) <= values]
    return fitting[-1] if fitting else None

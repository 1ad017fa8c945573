"""The one shape every metric has: ``distance(a, b, **options) -> Distance``.

A metric is a class with a registered name. It declares what it accepts (2D or 3D data,
channels), what it is (a distance, or a similarity where larger means closer), which metric
properties it promises, and the preprocessing it applies. Learned metrics also expose their
per-scale feature maps, from the same forward pass as the distance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from core.errors import MetricError
from core.volume import Volume

MetricKind = Literal["distance", "similarity"]


@dataclass(frozen=True)
class ScaleFeatures:
    """Feature maps of one scale (layer) for both inputs, and their weighted squared difference.

    Arrays are channel-first: ``[C, D, H, W]`` for 3D networks, ``[C, H, W]`` for 2D ones.
    ``weights`` are the learned non-negative per-channel weights (``[C]``); ``diff`` is
    ``weights[c] * (a[c] - b[c])**2`` after the metric's feature normalisation.
    """

    a: np.ndarray
    b: np.ndarray
    diff: np.ndarray
    weights: np.ndarray

    @property
    def channels(self) -> int:
        return int(self.a.shape[0])


@dataclass(frozen=True)
class Distance:
    """One metric on one pair.

    ``value`` is the scalar. ``contributions`` maps scale/layer names to the share of ``value``
    each accounts for (they sum to ``value``; empty for single-scale metrics); ``terms`` holds
    the raw per-scale terms before the final reduction (e.g. before VolSiM's square root).
    ``features`` (on request) maps the same names to :class:`ScaleFeatures`. ``voxel_map`` is a
    per-voxel map ``[D, H, W]`` where the metric has one (squared error, SSIM map, ...).
    """

    metric: str
    value: float
    contributions: Mapping[str, float] = field(default_factory=dict)
    terms: Mapping[str, float] = field(default_factory=dict)
    features: Mapping[str, ScaleFeatures] | None = None
    voxel_map: np.ndarray | None = None
    kind: MetricKind = "distance"
    info: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (without arrays)."""
        return {
            "metric": self.metric,
            "value": float(self.value),
            "kind": self.kind,
            "contributions": {k: float(v) for k, v in self.contributions.items()},
            "terms": {k: float(v) for k, v in self.terms.items()},
            "info": {k: v for k, v in self.info.items() if isinstance(v, (str, int, float, bool, type(None)))},
        }


def require_feature_memory(metric: str, shape: Sequence[int], need: int) -> None:
    """Raise :class:`core.errors.FeatureMemoryError` when keeping ``need`` bytes of feature maps of a
    pair of spatial ``shape`` would not fit in the free memory (rather than have the process killed)."""
    from core.errors import FeatureMemoryError
    from core.io.memory import available_memory, format_bytes

    have = available_memory()
    if need > have:
        raise FeatureMemoryError(
            f"{metric}: the feature maps of a {'x'.join(map(str, shape))} pair need about {format_bytes(need)}, "
            f"{format_bytes(have)} are available; compare without feature maps, or resample to a smaller grid")


def shares(value: float, terms: Mapping[str, float]) -> dict[str, float]:
    """Split ``value`` over scales in proportion to their (non-negative) terms."""
    total = float(sum(terms.values()))
    if total <= 0.0:
        return {k: 0.0 for k in terms}
    return {k: float(value) * float(t) / total for k, t in terms.items()}


class Metric:
    """Base class of every metric. Subclasses set the class attributes and implement ``distance``."""

    name: ClassVar[str] = "metric"
    label: ClassVar[str] = "Metric"
    kind: ClassVar[MetricKind] = "distance"
    dims: ClassVar[tuple[int, ...]] = (3,)  # native data dimensionality (2D metrics run on slices/renders)
    channels: ClassVar[tuple[int, ...]] = (1, 3)
    learned: ClassVar[bool] = False
    symmetric: ClassVar[bool] = True
    is_metric: ClassVar[bool] = False  # non-negativity, symmetry, d(x,x)=0 and triangle inequality promised
    has_voxel_map: ClassVar[bool] = False
    # how the per-voxel map sums up over a slice (per-slice curves): its "mean", or its "max" (Max error)
    map_summary: ClassVar[str] = "mean"
    preprocessing: ClassVar[str] = "none"
    # with normalize on, each pair is min-max mapped jointly onto input_range (per channel with
    # input_per_channel); normalize's default is normalizes_by_default. A set (matrix, series) maps
    # every member with the set's bounds instead, so all its pairs share one value scale.
    input_range: ClassVar[tuple[float, float] | None] = None
    input_per_channel: ClassVar[bool] = False
    normalizes_by_default: ClassVar[bool] = False
    compares_magnitudes: ClassVar[bool] = False  # vector volumes go in as their magnitude (normalised after)

    def distance(self, a: Volume, b: Volume, *, features: bool = False, **options: Any) -> Distance:
        raise NotImplementedError

    def distance_batch(self, pairs: Sequence[tuple[Volume, Volume]], **options: Any) -> list[Distance]:
        """Distances of several pairs; each equals the single-pair result (no batch coupling)."""
        return [self.distance(a, b, **options) for a, b in pairs]

    # -- helpers for subclasses
    def check_pair(self, a: Volume, b: Volume) -> None:
        if a.shape != b.shape:
            raise MetricError(
                f"{self.name}: shapes differ ({a.name} {a.shape} vs {b.name} {b.shape}); put both on one grid "
                "(resample=N or (D, H, W); on the command line --onto-a for A's grid, or --resample N)"
            )
        if a.channels != b.channels:
            raise MetricError(
                f"{self.name}: channel counts differ ({a.name} has {a.channels}, {b.name} has {b.channels}); "
                "compare the magnitude of the vector field instead"
            )
        if a.channels not in self.channels:
            raise MetricError(f"{self.name}: accepts {self.channels} channel(s), got {a.channels}")

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """What the metric accepts and applies, for ``volsight metrics`` and the GUI."""
        return {
            "name": cls.name,
            "label": cls.label,
            "kind": cls.kind,
            "dims": list(cls.dims),
            "channels": list(cls.channels),
            "learned": cls.learned,
            "symmetric": cls.symmetric,
            "metric_properties": cls.is_metric,
            "voxel_map": cls.has_voxel_map,
            "map_summary": cls.map_summary,
            "preprocessing": cls.preprocessing,
            "doc": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
        }

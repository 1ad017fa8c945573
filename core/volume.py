"""The Volume: an immutable float32 [C, D, H, W] array with its geometry and provenance."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from core.errors import VolumeError

NanPolicy = Literal["raise", "allow", "zero"]
_NAN_POLICIES = ("raise", "allow", "zero")
SUPPORTED_CHANNELS = (1, 3)


def _triple(value: Any, what: str) -> tuple[float, float, float]:
    try:
        t = tuple(float(v) for v in (value if np.ndim(value) else (value,) * 3))
    except (TypeError, ValueError) as exc:
        raise VolumeError(f"{what} must be three numbers (z, y, x), got {value!r}") from exc
    if len(t) != 3:
        raise VolumeError(f"{what} must be three numbers (z, y, x), got {len(t)}")
    return t  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class Volume:
    """A scalar (C=1) or vector (C=3) field on a regular grid.

    ``data`` is float32 ``[C, D, H, W]`` (axes z, y, x), read-only. A 3D array is taken
    as one channel. ``spacing`` and ``origin`` are (z, y, x) in world units.
    ``nan_policy``: ``"raise"`` (default) rejects NaN/Inf, ``"allow"`` keeps them,
    ``"zero"`` replaces them by 0 (the count is kept in ``metadata['nonfinite_replaced']``).
    """

    data: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    name: str = "volume"
    source: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    nan_policy: NanPolicy = "raise"

    def __post_init__(self) -> None:
        label = self.name or "volume"
        if self.nan_policy not in _NAN_POLICIES:
            raise VolumeError(f"{label}: nan_policy must be one of {_NAN_POLICIES}, got {self.nan_policy!r}")
        arr = self.data
        if not isinstance(arr, np.ndarray):
            try:
                arr = np.asarray(arr)
            except Exception as exc:  # noqa: BLE001 - anything array-like may fail its own way
                raise VolumeError(f"{label}: data is not array-like ({exc})") from exc
        if arr.dtype.kind not in "fiub":
            raise VolumeError(f"{label}: data must be numeric, got dtype {arr.dtype}")
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4:
            raise VolumeError(
                f"{label}: expected a 3D array [D, H, W] or 4D [C, D, H, W], got {arr.ndim}D shape {arr.shape}"
            )
        if arr.shape[0] not in SUPPORTED_CHANNELS:
            raise VolumeError(
                f"{label}: {arr.shape[0]} channels in shape {arr.shape}; supported are 1 (scalar) or 3 "
                "(vector), channel axis first"
            )
        small = [n for n in arr.shape[1:] if n < 2]
        if small:
            raise VolumeError(f"{label}: every spatial axis needs at least 2 voxels, got shape {arr.shape[1:]}")
        arr = arr.astype(np.float32, copy=False)
        meta = dict(self.metadata)
        if self.nan_policy != "allow":
            finite = np.isfinite(arr)
            if not finite.all():
                bad = int(arr.size - np.count_nonzero(finite))
                if self.nan_policy == "raise":
                    raise VolumeError(
                        f"{label}: {bad} non-finite values (NaN/Inf); choose nan_policy='zero' to replace "
                        "them or 'allow' to keep them"
                    )
                arr = np.where(finite, arr, np.float32(0.0))
                meta["nonfinite_replaced"] = bad
        if arr.flags.writeable and isinstance(self.data, np.ndarray) and np.shares_memory(arr, self.data):
            # the caller still holds a writable alias: copy so the Volume stays immutable
            # (readers hand over read-only or memory-mapped arrays, which are kept as they are)
            arr = arr.copy()
        arr.flags.writeable = False
        object.__setattr__(self, "data", arr)
        object.__setattr__(self, "spacing", _triple(self.spacing, f"{label}: spacing"))
        object.__setattr__(self, "origin", _triple(self.origin, f"{label}: origin"))
        if any(s <= 0 for s in self.spacing):
            raise VolumeError(f"{label}: spacing must be positive, got {self.spacing}")
        object.__setattr__(self, "metadata", MappingProxyType(meta))

    # ------------------------------------------------------------------ properties
    @property
    def channels(self) -> int:
        return int(self.data.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape (D, H, W)."""
        return tuple(int(n) for n in self.data.shape[1:])  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def value_range(self) -> tuple[float, float]:
        """(min, max) over all finite values; (0, 0) when there are none."""
        d = self.data
        if self.nan_policy == "allow" and not np.isfinite(d).all():
            d = d[np.isfinite(d)]
            if d.size == 0:
                return (0.0, 0.0)
        return (float(d.min()), float(d.max()))

    def nan_count(self) -> int:
        return int(np.count_nonzero(~np.isfinite(self.data)))

    def describe(self) -> str:
        lo, hi = self.value_range()
        kind = "scalar" if self.channels == 1 else "vector"
        d, h, w = self.shape
        return f"{self.name}: {d}×{h}×{w} {kind}, range [{lo:.4g}, {hi:.4g}]"

    # ------------------------------------------------------------------ derived volumes
    def evolve(self, data: np.ndarray | None = None, **changes: Any) -> Volume:
        """A new Volume with some fields replaced (data re-validated)."""
        if data is not None:
            changes["data"] = data
        return replace(self, **changes)

    def channel(self, index: int) -> Volume:
        """The single-channel volume of channel ``index``."""
        if not -self.channels <= index < self.channels:
            raise VolumeError(f"{self.name}: channel {index} out of range for {self.channels} channel(s)")
        return self.evolve(self.data[index : index + 1 if index != -1 else None], name=f"{self.name}[{index}]")

    def magnitude(self) -> Volume:
        """Euclidean norm over channels (identity for scalar volumes)."""
        if self.channels == 1:
            return self
        mag = np.sqrt(np.sum(np.square(self.data, dtype=np.float32), axis=0, keepdims=True))
        return self.evolve(mag, name=f"|{self.name}|")

    def scalar(self) -> Volume:
        """This volume as one channel: itself, or the magnitude of a vector field."""
        return self.magnitude()

    def downsample(self, factor: int | tuple[int, int, int]) -> Volume:
        """Block-mean downsampling by an integer factor per axis (trailing voxels dropped)."""
        f = (int(factor),) * 3 if np.ndim(factor) == 0 else tuple(int(x) for x in factor)  # type: ignore[arg-type]
        if len(f) != 3 or any(x < 1 for x in f):
            raise VolumeError(f"{self.name}: downsample factor must be >= 1 per axis, got {factor!r}")
        if f == (1, 1, 1):
            return self
        new = [n // k for n, k in zip(self.shape, f)]
        if any(n < 2 for n in new):
            raise VolumeError(f"{self.name}: downsampling {self.shape} by {f} leaves fewer than 2 voxels")
        c = self.channels
        d = self.data[:, : new[0] * f[0], : new[1] * f[1], : new[2] * f[2]]
        d = d.reshape(c, new[0], f[0], new[1], f[1], new[2], f[2]).mean(axis=(2, 4, 6), dtype=np.float32)
        sp = tuple(s * k for s, k in zip(self.spacing, f))
        return self.evolve(d, spacing=sp)

    def slice(self, axis: int, index: int | None = None) -> np.ndarray:
        """A 2D slice ``[C, ., .]`` perpendicular to spatial ``axis`` (0=z, 1=y, 2=x); middle by default."""
        if axis not in (0, 1, 2):
            raise VolumeError(f"{self.name}: slice axis must be 0, 1 or 2, got {axis}")
        n = self.shape[axis]
        i = n // 2 if index is None else int(index)
        if not -n <= i < n:
            raise VolumeError(f"{self.name}: slice index {i} out of range for axis {axis} of size {n}")
        return np.take(self.data, i, axis=axis + 1)

    @classmethod
    def from_array(cls, array: np.ndarray, name: str = "volume", **kwargs: Any) -> Volume:
        """Build from ``[D, H, W]`` or ``[C, D, H, W]``."""
        return cls(np.asarray(array), name=name, **kwargs)


def joint_range(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(min, max) over both arrays together."""
    return (float(min(a.min(), b.min())), float(max(a.max(), b.max())))


def normalize_arrays(a: np.ndarray, b: np.ndarray, lo: float = -1.0, hi: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Joint min-max of two arrays to [lo, hi]; a constant pair maps to the middle of the range."""
    mn, mx = joint_range(a, b)
    if mx > mn:
        s = (hi - lo) / (mx - mn)
        return ((a - mn) * s + lo).astype(np.float32), ((b - mn) * s + lo).astype(np.float32)
    mid = np.float32(0.5 * (lo + hi))
    return np.full(a.shape, mid, np.float32), np.full(b.shape, mid, np.float32)


def normalize_pair(a: Volume, b: Volume, lo: float = -1.0, hi: float = 1.0) -> tuple[Volume, Volume]:
    """Joint min-max normalisation of a pair to [lo, hi] (default [-1, 1]).

    Both volumes share one affine map, so their difference keeps its meaning. A constant
    pair (max == min) maps to the middle of the range instead of dividing by zero.
    """
    na, nb = normalize_arrays(a.data, b.data, lo, hi)
    return a.evolve(na), b.evolve(nb)

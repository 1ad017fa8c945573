"""Transfer functions: a colormap, an opacity curve and a value range, independent of each other.

A data value v maps to t = clamp((v − lo) / (hi − lo), 0, 1); the colour is the piecewise-linear
colormap at t and the opacity the piecewise-linear opacity curve at t. The opacity is the
opacity of one sample per *voxel length* of the source (a step of one voxel); ray-marchers with
another step correct it as ``1 − (1 − a)^(step / voxel)`` (``corrected_opacity``), so an image
does not depend on the sampling rate.

Colormaps are read from ParaView JSON exports (a list with one object holding ``RGBPoints`` =
flat [x, r, g, b, …] and optionally ``Points`` = flat [x, alpha, midpoint, sharpness, …]; the
midpoint/sharpness pairs are ignored, x is renormalised to [0, 1]). Without ``Points`` the opacity
is a linear 0 → 1 ramp. Presets live in ``resources/colormaps/<name>.json``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import VolsightError

if TYPE_CHECKING:
    import torch

COLORMAP_DIR = Path(__file__).resolve().parents[1] / "resources" / "colormaps"


class TransferFunctionError(VolsightError, ValueError):
    """A colormap file or control-point list is malformed."""


def _points(values: Any, width: int, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size < 2 * width or arr.size % width:
        raise TransferFunctionError(
            f"{what}: expected a flat list of {width}-tuples (at least 2), got {arr.size} numbers"
        )
    pts = arr.reshape(-1, width)
    if not np.all(np.isfinite(pts)):
        raise TransferFunctionError(f"{what}: control points must be finite")
    return pts


def _normalised(pts: np.ndarray, what: str) -> np.ndarray:
    """Sort by x and renormalise x to [0, 1]."""
    pts = pts[np.argsort(pts[:, 0], kind="stable")]
    lo, hi = pts[0, 0], pts[-1, 0]
    if hi <= lo:
        raise TransferFunctionError(f"{what}: control points need distinct x values, got all x = {lo}")
    out = pts.copy()
    out[:, 0] = (pts[:, 0] - lo) / (hi - lo)
    return out


@dataclass(frozen=True, eq=False)
class TransferFunction:
    """Colormap (x, r, g, b) + opacity curve (x, a) on t in [0, 1] + value range (lo, hi)."""

    color_points: np.ndarray = field(default_factory=lambda: np.array([[0.0, 0, 0, 0], [1.0, 1, 1, 1]]))
    opacity_points: np.ndarray = field(default_factory=lambda: np.array([[0.0, 0.0], [1.0, 1.0]]))
    value_range: tuple[float, float] = (0.0, 1.0)
    name: str = "custom"

    def __post_init__(self) -> None:
        c = _normalised(_points(self.color_points, 4, f"{self.name}: colour points"), f"{self.name}: colour points")
        a = _normalised(_points(self.opacity_points, 2, f"{self.name}: opacity points"), f"{self.name}: opacity points")
        c[:, 1:] = np.clip(c[:, 1:], 0.0, 1.0)
        a[:, 1] = np.clip(a[:, 1], 0.0, 1.0)
        c.flags.writeable = False
        a.flags.writeable = False
        object.__setattr__(self, "color_points", c)
        object.__setattr__(self, "opacity_points", a)
        lo, hi = (float(v) for v in self.value_range)
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise TransferFunctionError(f"{self.name}: value range must be finite, got {self.value_range}")
        if hi <= lo:
            # a constant volume: widen symmetrically so t is still defined
            pad = max(abs(lo) * 1e-6, 1e-6)
            lo, hi = lo - pad, hi + pad
        object.__setattr__(self, "value_range", (lo, hi))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_paraview_json(cls, source: str | os.PathLike | list | dict, value_range: tuple[float, float] = (0.0, 1.0)):
        """Read a ParaView colormap export (path, JSON text already parsed, or the object)."""
        label = "colormap"
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            label = str(path)
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise TransferFunctionError(f"{path}: cannot read colormap ({exc.strerror or exc})") from exc
            except json.JSONDecodeError as exc:
                raise TransferFunctionError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
        else:
            data = source
        obj = data[0] if isinstance(data, list) and data else data
        if not isinstance(obj, dict) or "RGBPoints" not in obj:
            raise TransferFunctionError(
                f"{label}: expected a ParaView colormap (a list with one object with RGBPoints)"
            )
        color = _points(obj["RGBPoints"], 4, f"{label}: RGBPoints")
        if "Points" in obj and obj["Points"]:
            op = _points(obj["Points"], 4, f"{label}: Points")[:, :2]
        else:
            op = np.array([[0.0, 0.0], [1.0, 1.0]])
        return cls(color, op, value_range, name=str(obj.get("Name", label)))

    @classmethod
    def preset(cls, name: str, value_range: tuple[float, float] = (0.0, 1.0)) -> TransferFunction:
        """A colormap from resources/colormaps (case-insensitive name, e.g. 'viridis', 'plume')."""
        files = preset_files()
        key = name.lower()
        if key not in files:
            raise TransferFunctionError(f"unknown colormap {name!r}; available: {', '.join(sorted(files))}")
        tf = _load_preset(str(files[key]))
        return tf.evolve(value_range=value_range, name=key)

    def to_paraview_json(self) -> list[dict[str, Any]]:
        """The ParaView export form (x in [0, 1])."""
        pts = [float(v) for v in self.opacity_points.ravel()]
        opacity = []
        for i in range(0, len(pts), 2):
            opacity += [pts[i], pts[i + 1], 0.5, 0.0]
        return [{"Name": self.name, "ColorSpace": "RGB", "RGBPoints": [float(v) for v in self.color_points.ravel()],
                 "Points": opacity}]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for session files)."""
        return {"name": self.name, "value_range": list(self.value_range),
                "color_points": self.color_points.tolist(), "opacity_points": self.opacity_points.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransferFunction:
        """Inverse of ``to_dict``."""
        try:
            return cls(np.asarray(data["color_points"], dtype=np.float64),
                       np.asarray(data["opacity_points"], dtype=np.float64),
                       tuple(data["value_range"]), name=str(data.get("name", "custom")))
        except (KeyError, TypeError) as exc:
            raise TransferFunctionError(f"not a transfer-function dict ({exc})") from exc

    def evolve(self, **changes: Any) -> TransferFunction:
        """A copy with some fields replaced (``value_range``, ``opacity_points``, ...)."""
        return replace(self, **changes)

    def with_opacity(self, opacity_points: Any) -> TransferFunction:
        return self.evolve(opacity_points=np.asarray(opacity_points, dtype=np.float64).reshape(-1, 2))

    def with_constant_opacity(self, alpha: float) -> TransferFunction:
        return self.with_opacity([[0.0, alpha], [1.0, alpha]])

    # ------------------------------------------------------------------ evaluation
    def normalise(self, values: np.ndarray) -> np.ndarray:
        """Data values → t in [0, 1]."""
        lo, hi = self.value_range
        return np.clip((np.asarray(values, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)

    def colors(self, t: np.ndarray) -> np.ndarray:
        """RGB [..., 3] at t in [0, 1]."""
        t = np.asarray(t, dtype=np.float64)
        c = self.color_points
        return np.stack([np.interp(t, c[:, 0], c[:, k]) for k in (1, 2, 3)], axis=-1)

    def opacities(self, t: np.ndarray) -> np.ndarray:
        """Opacity per voxel-length step at t in [0, 1]."""
        a = self.opacity_points
        return np.interp(np.asarray(t, dtype=np.float64), a[:, 0], a[:, 1])

    def lut(self, n: int = 256) -> np.ndarray:
        """[n, 4] float32 RGBA table over t = 0 … 1 (entry i at t = i / (n − 1))."""
        if n < 2:
            raise TransferFunctionError(f"lut size must be at least 2, got {n}")
        t = np.linspace(0.0, 1.0, n)
        return np.concatenate([self.colors(t), self.opacities(t)[:, None]], axis=1).astype(np.float32)

    def lut_torch(self, n: int = 1024, device: str | torch.device | None = None) -> torch.Tensor:
        """The LUT as a torch tensor [n, 4] (for the ray-marcher)."""
        import torch

        return torch.from_numpy(self.lut(n)).to(device or "cpu")

    @property
    def is_transparent(self) -> bool:
        """True when every opacity is zero (nothing would be drawn by translucent rendering)."""
        return bool(np.all(self.opacity_points[:, 1] <= 0.0))

    def __repr__(self) -> str:
        return (f"TransferFunction({self.name!r}, range={self.value_range}, {len(self.color_points)} colour / "
                f"{len(self.opacity_points)} opacity points)")


def corrected_opacity(alpha: np.ndarray | torch.Tensor, step_in_voxels: float) -> np.ndarray | torch.Tensor:
    """Opacity of a step of ``step_in_voxels`` voxel lengths given the per-voxel opacity (numpy or torch)."""
    if step_in_voxels == 1.0:
        return alpha
    # look torch up only if it is already loaded: the GL path must not pay for importing it
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(alpha, torch.Tensor):
        return 1.0 - torch.pow(torch.clamp(1.0 - alpha, min=0.0), step_in_voxels)
    return 1.0 - np.power(np.clip(1.0 - np.asarray(alpha), 0.0, None), step_in_voxels)


BACKGROUND_SHARE = 0.10  # a value level is "the background" when this share of the voxels sits on it
BACKGROUND_BINS = 256
BACKGROUND_ZONE = 0.25  # ... and it lies in the lowest quarter of the range


SAMPLE_VALUES = 1 << 21  # histograms for display and for the range's background look at most this many values


def value_sample(data: np.ndarray, limit: int = SAMPLE_VALUES) -> np.ndarray:
    """The values of ``data`` (flattened), or every k-th of them when there are more than ``limit``.

    For histograms that are looked at, not reported: a 256³ volume's 16.7 M values are counted
    in about 0.13 s each on one core, and a window that redraws two of them several times when a
    pair loads froze for seconds; 2 M evenly strided values give the same picture.
    """
    flat = np.asarray(data).reshape(-1)
    step = -(-flat.size // limit) if flat.size > limit else 1
    return flat[::step]


def display_range(*arrays: np.ndarray) -> tuple[float, float]:
    """The default value range of a transfer function over ``arrays`` (the finite values of all).

    The data's min and max, except where a dominant background level (one histogram bin of 256
    holding at least 10% of the voxels, in the lowest quarter of the range but not at its bottom)
    sits above the minimum: then the range starts at that level (the median of the bin's values),
    so that the background is transparent under the usual opacity ramp. That is the case of an
    exactly-zero background compared with a noisy or neurally compressed copy whose background
    scatters around zero: with the joint min as the lower bound the clean volume's background
    would get opacity and fill the box with haze. Values below the range show as the range's
    lowest colour, transparent. A range that would be empty becomes (lo, lo + 1). The bounds are
    those of all values; the background is looked for in a strided sample of large arrays
    (:func:`value_sample`).
    """
    parts = [np.asarray(a, dtype=np.float32).reshape(-1) for a in arrays]
    parts = [p for p in (p if np.isfinite(p).all() else p[np.isfinite(p)] for p in parts) if p.size]
    if not parts:
        return (0.0, 1.0)
    lo, hi = min(float(p.min()) for p in parts), max(float(p.max()) for p in parts)
    if not hi > lo:
        return (lo, lo + 1.0)
    data = np.concatenate([value_sample(p) for p in parts])
    counts, edges = np.histogram(data, bins=BACKGROUND_BINS, range=(lo, hi))
    k = int(np.argmax(counts))
    if 0 < k < BACKGROUND_ZONE * BACKGROUND_BINS and counts[k] >= BACKGROUND_SHARE * data.size:
        inside = data[(data >= edges[k]) & (data <= edges[k + 1])]
        lo = float(np.median(inside))
    return (lo, hi)


def preset_files() -> dict[str, Path]:
    """name → path of the shipped colormaps."""
    return {p.stem.lower(): p for p in sorted(COLORMAP_DIR.glob("*.json"))}


def preset_names() -> list[str]:
    return sorted(preset_files())


@cache
def _load_preset(path: str) -> TransferFunction:
    return TransferFunction.from_paraview_json(path)

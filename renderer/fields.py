"""Renderable sources: a Volume seen as a field, analytic test fields, and baking a field to a Volume.

Anything with ``query(points[N, 3]) -> [N, C]`` (normalised (x, y, z) in [-1, 1], -1/+1 at the
first/last voxel centres, ``align_corners=True``) and ``value_range`` can be rendered; the
ray-marcher also reads ``source_shape`` (D, H, W) and ``spacing`` when present to size the box.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from core.volume import Volume

if TYPE_CHECKING:
    import torch


class RenderableField(Protocol):
    """What the renderer needs from a NeuralField (models.field.NeuralField satisfies it)."""

    value_range: Any

    def query(self, points: torch.Tensor) -> torch.Tensor: ...


def field_channels(field: Any) -> int:
    return int(getattr(field, "channels", 1))


def field_shape(field: Any) -> tuple[int, int, int] | None:
    """(D, H, W) of the grid the field stands for, or None (an analytic field)."""
    shape = getattr(field, "source_shape", None)
    return None if shape is None else tuple(int(n) for n in shape)  # type: ignore[return-value]


def field_spacing(field: Any) -> tuple[float, float, float]:
    return tuple(float(s) for s in getattr(field, "spacing", (1.0, 1.0, 1.0)))  # type: ignore[return-value]


def field_value_range(field: Any) -> tuple[float, float]:
    vr = field.value_range() if callable(field.value_range) else field.value_range
    lo, hi = (float(v) for v in vr)
    return lo, hi


class VolumeField:
    """A Volume as a field: trilinear interpolation with ``grid_sample`` (align_corners=True, border clamp)."""

    def __init__(self, volume: Volume, device=None):
        import torch

        from core.device import select_device

        self.volume = volume
        self.name = volume.name
        self.channels = volume.channels
        self.source_shape = volume.shape
        self.spacing = volume.spacing
        self._range = volume.value_range()
        self.device = torch.device(device) if device is not None else select_device()
        self._grid = torch.from_numpy(np.array(volume.data, dtype=np.float32)).to(self.device)[None]

    @property
    def value_range(self) -> tuple[float, float]:
        return self._range

    def query(self, points: torch.Tensor) -> torch.Tensor:
        """Values [N, C] at normalised points [N, 3] (x, y, z)."""
        import torch.nn.functional as F

        pts = points.to(device=self.device, dtype=self._grid.dtype)
        n = pts.shape[0]
        out = F.grid_sample(self._grid, pts.view(1, 1, 1, n, 3), mode="bilinear", padding_mode="border",
                            align_corners=True)
        return out.view(self.channels, n).t()

    def bake(self, shape: tuple[int, int, int] | None = None, chunk: int = 2**18) -> Volume:
        if shape is None or tuple(shape) == self.source_shape:
            return self.volume
        return bake_field(self, shape, chunk)


class GaussianBlobField:
    """An analytic scalar field: a sum of isotropic Gaussians (for tests and benchmarks)."""

    def __init__(self, centres, widths, amplitudes, source_shape: tuple[int, int, int] = (32, 32, 32), device=None):
        import torch

        self.device = torch.device(device or "cpu")
        self.centres = torch.as_tensor(np.asarray(centres, np.float32), device=self.device).reshape(-1, 3)
        self.widths = torch.as_tensor(np.asarray(widths, np.float32), device=self.device).reshape(-1)
        self.amplitudes = torch.as_tensor(np.asarray(amplitudes, np.float32), device=self.device).reshape(-1)
        self.channels = 1
        self.source_shape = tuple(int(n) for n in source_shape)
        self.name = "gaussian-blobs"
        self.value_range = (0.0, float(self.amplitudes.clamp(min=0).sum()))

    @classmethod
    def random(cls, n_blobs: int = 6, seed: int = 0, **kwargs) -> GaussianBlobField:
        rng = np.random.default_rng(seed)
        return cls(rng.uniform(-0.55, 0.55, (n_blobs, 3)), rng.uniform(0.12, 0.3, n_blobs),
                   rng.uniform(0.5, 1.0, n_blobs), **kwargs)

    def query(self, points: torch.Tensor) -> torch.Tensor:
        pts = points.to(device=self.device, dtype=self.centres.dtype)
        d2 = ((pts[:, None, :] - self.centres[None]) ** 2).sum(-1)
        return (self.amplitudes * (-(d2 / (2.0 * self.widths**2))).exp()).sum(-1, keepdim=True)


def grid_points(shape: tuple[int, int, int]) -> np.ndarray:
    """Normalised (x, y, z) points of every voxel centre of a [D, H, W] grid, in C order (z slowest)."""
    d, h, w = shape
    z, y, x = np.meshgrid(np.linspace(-1, 1, d), np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    return np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1).astype(np.float32)


def bake_field(field: Any, shape: tuple[int, int, int] | None = None, chunk: int = 2**18,
               max_side: int = 256) -> Volume:
    """Sample ``field`` on a grid (default: its source shape, capped at ``max_side`` per axis) → Volume."""
    import torch

    if shape is None:
        src = field_shape(field) or (64, 64, 64)
        f = max(1.0, max(src) / max_side)
        shape = tuple(max(2, int(math.floor(n / f))) for n in src)  # type: ignore[assignment]
    bake = getattr(field, "bake", None)
    if bake is not None and not isinstance(field, VolumeField):
        try:
            return bake(shape=tuple(shape), chunk=chunk)
        except TypeError:
            return bake(tuple(shape))
    pts = torch.from_numpy(grid_points(tuple(shape)))  # type: ignore[arg-type]
    c = field_channels(field)
    out = np.empty((pts.shape[0], c), np.float32)
    with torch.no_grad():
        for i in range(0, pts.shape[0], chunk):
            out[i : i + chunk] = field.query(pts[i : i + chunk]).float().cpu().numpy()
    data = out.T.reshape(c, *shape)
    return Volume(data, spacing=field_spacing(field), name=str(getattr(field, "name", "field")),
                  nan_policy="zero")

"""Regions of interest: a box of voxels of A, in which a pair is compared.

A region is three half-open voxel ranges ``((z0, z1), (y0, y1), (x0, x1))`` on A's grid, written
``"z0:z1,y0:y1,x0:x1"`` (an empty bound is the edge: ``":,10:40,:"``). When B's grid differs from
A's it is resampled onto A's first (as an unrestricted comparison does), so the region names the
same voxels in both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.errors import MetricError
from core.volume import Volume

Region = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
AXES = ("z", "y", "x")


def check_region(region: Sequence[Sequence[int]], shape: Sequence[int]) -> Region:
    """``region`` as a Region, or MetricError saying which axis is out of ``shape`` or thinner than 2 voxels."""
    if len(region) != 3 or any(len(r) != 2 for r in region):
        raise MetricError(f"a region is three (start, stop) voxel ranges (z, y, x), got {region!r}")
    out = []
    for axis, (r, n) in enumerate(zip(region, shape, strict=True)):
        start, stop = int(r[0]), int(r[1])
        if not 0 <= start < stop <= int(n):
            raise MetricError(f"region {AXES[axis]} {start}:{stop} is outside 0:{n}")
        if stop - start < 2:
            raise MetricError(f"region {AXES[axis]} {start}:{stop} has fewer than 2 voxels")
        out.append((start, stop))
    return tuple(out)  # type: ignore[return-value]


def parse_region(text: str, shape: Sequence[int]) -> Region:
    """Parse ``"z0:z1,y0:y1,x0:x1"`` (voxel indices, stop excluded; empty bounds are the edges)."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 3:
        raise MetricError(f"region {text!r}: expected three ranges z0:z1,y0:y1,x0:x1")
    ranges = []
    for axis, (part, n) in enumerate(zip(parts, shape, strict=True)):
        bounds = part.split(":")
        if len(bounds) != 2:
            raise MetricError(f"region {text!r}: {AXES[axis]} range {part!r} is not start:stop")
        try:
            start = int(bounds[0]) if bounds[0].strip() else 0
            stop = int(bounds[1]) if bounds[1].strip() else int(n)
        except ValueError:
            raise MetricError(f"region {text!r}: {AXES[axis]} range {part!r} is not two whole numbers") from None
        ranges.append((start, stop))
    return check_region(ranges, shape)


def region_fractions(region: Region, shape: Sequence[int]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(lo, hi) fractions (z, y, x) of a region's outer voxel edges on a grid of ``shape``."""
    return (tuple(r[0] / n for r, n in zip(region, shape, strict=True)),
            tuple(r[1] / n for r, n in zip(region, shape, strict=True)))


def format_region(region: Region) -> str:
    """The text form ``"z0:z1,y0:y1,x0:x1"``."""
    return ",".join(f"{a}:{b}" for a, b in region)


def is_whole(region: Region | None, shape: Sequence[int]) -> bool:
    """True for no region or one that spans the whole grid."""
    return region is None or all(r == (0, int(n)) for r, n in zip(region, shape, strict=True))


def crop(volume: Volume, region: Region) -> Volume:
    """The voxels of ``region`` as a Volume (origin moved to the box's first voxel, name marked)."""
    region = check_region(region, volume.shape)
    (z0, z1), (y0, y1), (x0, x1) = region
    origin = tuple(o + s * r[0] for o, s, r in zip(volume.origin, volume.spacing, region, strict=True))
    return volume.evolve(volume.data[:, z0:z1, y0:y1, x0:x1], origin=origin,
                         name=f"{volume.name}[{format_region(region)}]")


def crop_pair(a: Volume, b: Volume, region: Region, interpolation: str = "linear") -> tuple[Volume, Volume]:
    """``region`` of A and the same voxels of B (B resampled onto A's grid first when the grids differ)."""
    region = check_region(region, a.shape)
    return crop(a, region), crop(onto_grid(b, a.shape, interpolation), region)


def onto_grid(volume: Volume, shape: Sequence[int], interpolation: str = "linear") -> Volume:
    """``volume`` resampled onto a grid of ``shape`` (corner-aligned: its first and last voxel centres stay
    where they were, the spacing changes); the volume itself when it is on such a grid already."""
    shape = tuple(int(n) for n in shape)
    if volume.shape == shape:
        return volume
    from core.metrics.preprocess import resample

    data = resample(volume.data, shape, interpolation).numpy()
    spacing = tuple(s * (nv - 1) / max(1, n - 1) for s, nv, n in zip(volume.spacing, volume.shape, shape, strict=True))
    return volume.evolve(data, spacing=spacing)


def region_onto_grid(region: Region, shape: Sequence[int], target: Sequence[int]) -> Region:
    """The box of a grid of ``target`` that covers ``region`` of a grid of ``shape`` spanning the same domain
    (corner-aligned, as ``onto_grid`` resamples: voxel centre i of n sits at i / (n - 1) of the domain).

    The region's first and last voxel centres are mapped and rounded outwards, so the box covers at
    least what the region covers; it keeps at least 2 voxels per axis. A region of the same grid comes
    back unchanged."""
    region = check_region(region, shape)
    shape = tuple(int(n) for n in shape)
    target = tuple(int(m) for m in target)
    if shape == target:
        return region
    out = []
    for (lo, hi), n, m in zip(region, shape, target, strict=True):
        if m < 2:
            raise MetricError(f"a grid of {m} voxels along an axis cannot hold a region")
        f = (m - 1) / max(1, n - 1)
        start = int(np.floor(lo * f + 1e-9))
        stop = int(np.ceil((hi - 1) * f - 1e-9)) + 1
        start, stop = max(0, min(start, m - 2)), min(m, stop)
        out.append((start, max(stop, start + 2)))
    return tuple(out)  # type: ignore[return-value]


def embed(values: np.ndarray, region: Region, shape: Sequence[int], fill: float = 0.0) -> np.ndarray:
    """A ``[D, H, W]`` array of ``shape`` holding the region's ``values`` in its box and ``fill`` elsewhere."""
    region = check_region(region, shape)
    box = tuple(slice(lo, hi) for lo, hi in region)
    expected = tuple(hi - lo for lo, hi in region)
    if tuple(values.shape) != expected:
        raise MetricError(f"a map of shape {tuple(values.shape)} does not fill region {format_region(region)} "
                          f"({expected})")
    out = np.full(tuple(int(n) for n in shape), fill, dtype=values.dtype)
    out[box] = values
    return out


def crop_all(volumes: Sequence[Volume], region: Region | str) -> list[Volume]:
    """``region`` of every volume (a set on one grid, e.g. a series); MetricError naming one it does not fit."""
    out = []
    for v in volumes:
        try:
            box = parse_region(region, v.shape) if isinstance(region, str) else check_region(region, v.shape)
        except MetricError as exc:
            raise MetricError(f"{v.name}: {exc} (its grid is {v.shape})") from None
        out.append(crop(v, box))
    return out

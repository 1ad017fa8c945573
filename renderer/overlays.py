"""Geometry drawn over a rendered volume: the outline of the slice panel's plane and of a region's box.

Coordinates are world coordinates of :mod:`renderer.camera` (box centred at the origin, longest
side 2, x = W, y = H, z = D).
"""

from __future__ import annotations

import numpy as np

# array axis of a [D, H, W] volume -> world axis (x = 0, y = 1, z = 2)
WORLD_AXIS = {0: 2, 1: 1, 2: 0}


def slice_outline(half: np.ndarray, axis: int, fraction: float) -> np.ndarray:
    """Closed outline [5, 3] of the plane perpendicular to array ``axis`` at ``fraction`` of the box.

    ``half`` are the box's half extents (x, y, z) (:func:`renderer.camera.box_half_extents`);
    ``axis`` is 0, 1 or 2 for the D (z), H (y) or W (x) axis of the array; ``fraction`` runs from
    0 (the first voxel's low edge) to 1 (the last voxel's high edge): voxel ``i`` of ``n`` has its
    centre at ``(i + 0.5) / n``. The outline runs along the box's edges in the two other axes.
    """
    if axis not in WORLD_AXIS:
        raise ValueError(f"slice axis must be 0 (z), 1 (y) or 2 (x), got {axis!r}")
    half = np.asarray(half, dtype=np.float64)
    w = WORLD_AXIS[axis]
    u, v = (k for k in range(3) if k != w)
    corners = ((-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1))
    out = np.zeros((5, 3), dtype=np.float64)
    out[:, w] = -half[w] + 2.0 * half[w] * float(np.clip(fraction, 0.0, 1.0))
    for k, (su, sv) in enumerate(corners):
        out[k, u] = su * half[u]
        out[k, v] = sv * half[v]
    return out


def box_edges(half: np.ndarray, lo: tuple[float, float, float], hi: tuple[float, float, float]) -> np.ndarray:
    """The 12 edges [24, 3] (pairs of end points) of the box from fractions ``lo`` to ``hi`` along (z, y, x).

    Fractions as in :func:`slice_outline`: 0 and 1 are the volume's outer voxel edges, so voxels
    ``start .. stop - 1`` of ``n`` span ``start / n`` to ``stop / n``.
    """
    lo_w, hi_w = world_box(half, lo, hi)
    corners = np.array([[(lo_w, hi_w)[i >> k & 1][k] for k in range(3)] for i in range(8)])
    edges = [(i, i | 1 << k) for i in range(8) for k in range(3) if not i >> k & 1]
    return np.array([corners[e] for pair in edges for e in pair])


CUT_SIDES = ("below", "above")  # keep the voxels at or below / at or above the cut's index along its axis


def cut_box(axis: int, fraction: float, keep: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The part of the volume a cut keeps, as (lo, hi) fractions along (z, y, x) (as :func:`box_edges`).

    The cut is the plane perpendicular to array ``axis`` at ``fraction`` of the box (at a slice's
    voxel centres, the face left shows that slice); ``keep`` is ``"below"`` (lower indices) or ``"above"``.
    """
    if axis not in WORLD_AXIS:
        raise ValueError(f"cut axis must be 0 (z), 1 (y) or 2 (x), got {axis!r}")
    if keep not in CUT_SIDES:
        raise ValueError(f"a cut keeps one of {CUT_SIDES}, not {keep!r}")
    f = float(np.clip(fraction, 0.0, 1.0))
    lo, hi = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    if keep == "below":
        hi[axis] = f
    else:
        lo[axis] = f
    return (lo[0], lo[1], lo[2]), (hi[0], hi[1], hi[2])


def world_box(half: np.ndarray, lo: tuple[float, float, float], hi: tuple[float, float, float]
              ) -> tuple[np.ndarray, np.ndarray]:
    """World corners (x, y, z) of the box from fractions ``lo`` to ``hi`` along (z, y, x)."""
    half = np.asarray(half, dtype=np.float64)
    lo_w, hi_w = -half.copy(), half.copy()
    for axis in range(3):
        w = WORLD_AXIS[axis]
        lo_w[w] = -half[w] + 2.0 * half[w] * float(np.clip(lo[axis], 0.0, 1.0))
        hi_w[w] = -half[w] + 2.0 * half[w] * float(np.clip(hi[axis], 0.0, 1.0))
    return lo_w, hi_w


def cut_plane(half: np.ndarray, axis: int, fraction: float, keep: str) -> np.ndarray:
    """The cut as one clipping plane [1, 2, 3]: a world point on it and the normal pointing to the part kept
    (vispy's ``Volume.clipping_planes``, scene coordinates x, y, z)."""
    lo, hi = world_box(half, *cut_box(axis, fraction, keep))
    w = WORLD_AXIS[axis]
    point, normal = np.zeros(3), np.zeros(3)
    point[w] = hi[w] if keep == "below" else lo[w]
    normal[w] = -1.0 if keep == "below" else 1.0
    return np.array([[point, normal]])


def box_planes(half: np.ndarray, lo: tuple[float, float, float], hi: tuple[float, float, float]) -> np.ndarray:
    """The six clipping planes [6, 2, 3] (world point, inward normal) that keep only the box from fractions
    ``lo`` to ``hi`` along (z, y, x) (vispy's ``Volume.clipping_planes``)."""
    lo_w, hi_w = world_box(half, lo, hi)
    planes = []
    for w in range(3):
        normal = np.zeros(3)
        normal[w] = 1.0
        planes.append([lo_w * (normal > 0), normal])  # the low face; the other coordinates do not matter
        planes.append([hi_w * (normal > 0), -normal])
    return np.array(planes, dtype=np.float64)


def intersect_boxes(*boxes: tuple[tuple[float, ...], tuple[float, ...]] | None
                    ) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
    """The part every given box (lo, hi fractions along z, y, x) covers; None when none is given."""
    given = [b for b in boxes if b is not None]
    if not given:
        return None
    lo = tuple(max(float(b[0][k]) for b in given) for k in range(3))
    hi = tuple(min(float(b[1][k]) for b in given) for k in range(3))
    return (lo[0], lo[1], lo[2]), (hi[0], hi[1], hi[2])


def crosshair(half: np.ndarray, point: tuple[float, float, float], arm: float = 0.08) -> np.ndarray:
    """Three segments [6, 3] (pairs of end points) crossing at ``point``, fractions along (z, y, x) (a voxel's
    centre is ``(i + 0.5) / n``), each ``2 * arm`` of the box's longest side long: a mark for one voxel."""
    half = np.asarray(half, dtype=np.float64)
    centre, _ = world_box(half, point, point)
    reach = arm * 2.0 * float(half.max())
    ends = []
    for w in range(3):
        step = np.zeros(3)
        step[w] = reach
        ends += [centre - step, centre + step]
    return np.array(ends)

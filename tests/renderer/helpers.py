"""Test volumes whose renders are known exactly."""

from __future__ import annotations

import math

import numpy as np

from core.volume import Volume
from renderer.camera import OrbitCamera

BLOCK = 4


def block_columns_volume(n: int = 32, seed: int = 7) -> tuple[Volume, np.ndarray]:
    """A volume constant over BLOCK×BLOCK columns in x–y; each column has a BLOCK-voxel plateau at its max.

    Returns the volume and the per-block maximum [n/BLOCK (y), n/BLOCK (x)]. Because the value is constant
    across a block and the maximum is a plateau along z, any trilinear sampling with steps under a voxel
    through a block's interior finds exactly the block maximum: a MIP image must equal it there.
    """
    rng = np.random.default_rng(seed)
    nb = n // BLOCK
    peak = rng.uniform(0.2, 1.0, (nb, nb))
    data = np.empty((n, n, n), np.float32)
    for by in range(nb):
        for bx in range(nb):
            column = rng.uniform(0.0, 0.5, n) * peak[by, bx]
            z0 = rng.integers(1, n - BLOCK - 1)
            column[z0 : z0 + BLOCK] = peak[by, bx]
            data[:, by * BLOCK : (by + 1) * BLOCK, bx * BLOCK : (bx + 1) * BLOCK] = column[:, None, None]
    return Volume.from_array(data, name="blocks"), peak


def top_down_camera() -> OrbitCamera:
    """Orthographic view down −z whose image exactly covers the [-1, 1]² face of the box (x right, y up)."""
    return OrbitCamera(azimuth=0.0, polar=0.0, distance=1.0 / math.tan(math.radians(22.5)), fov=0.0)


def block_interior_expectation(peak: np.ndarray, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(expected block max per pixel, mask of pixels whose trilinear footprint stays inside one block)."""
    px = np.arange(size)
    u = (px + 0.5) * n / size - 0.5  # voxel coordinate of the pixel centre (x; y before the flip)
    inside = (np.floor(u) >= (np.floor(u + 0.5) // BLOCK) * BLOCK) & (
        np.floor(u) + 1 <= (np.floor(u + 0.5) // BLOCK) * BLOCK + BLOCK - 1)
    block = np.clip(np.floor(u + 0.5) // BLOCK, 0, n // BLOCK - 1).astype(int)
    rows_block = block[::-1]  # image row 0 is the top: largest y
    rows_inside = inside[::-1]
    expected = peak[rows_block[:, None], block[None, :]]
    mask = rows_inside[:, None] & inside[None, :]
    return expected, mask

"""Empty-space skipping for the ray-marcher: a coarse grid of per-cell value intervals of a field.

The field is evaluated once at the corners of ``resolution`` cells along the longest side of the
world box; each cell keeps the min/max of its 8 corners, widened to its neighbours (``dilation``
cells per side) and by ``margin`` × the value range, a safety allowance for features between the
corners. From these intervals the ray-marcher decides, per sample and without querying the field,
whether the sample can contribute (see renderer/raymarch.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from renderer.transfer import TransferFunction

if TYPE_CHECKING:
    import torch


class OccupancyGrid:
    """Per-cell (min, max) of a field on a coarse grid over the world box, conservatively widened."""

    def __init__(self, renderer: Any, resolution: int, margin: float, dilation: int = 1):
        """``renderer``: a FieldRenderer (its box, device, value range and ``values_at_world``)."""
        import torch
        import torch.nn.functional as F

        half = renderer.half
        self.cells = np.maximum(1, np.round(resolution * half / half.max()).astype(int))  # (x, y, z)
        cx, cy, cz = (int(n) for n in self.cells)
        axes = [np.linspace(-half[i], half[i], int(self.cells[i]) + 1) for i in range(3)]
        z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
        world = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
        vals = renderer.values_at_world(torch.from_numpy(world).to(renderer.device, torch.float32))
        corners = vals.view(1, 1, cz + 1, cy + 1, cx + 1)
        # cell min/max from its 8 corners, then 3×3×3 neighbourhood dilation
        cmax = F.max_pool3d(corners, 2, stride=1)
        cmin = -F.max_pool3d(-corners, 2, stride=1)
        if dilation > 0:
            k = 2 * dilation + 1
            cmax = F.max_pool3d(cmax, k, stride=1, padding=dilation)
            cmin = -F.max_pool3d(-cmin, k, stride=1, padding=dilation)
        lo, hi = renderer.value_range
        pad = margin * max(hi - lo, 1e-12)
        self.cells_zyx = (cz, cy, cx)
        self.cmin = (cmin - pad).view(self.cells_zyx)
        self.cmax = (cmax + pad).view(self.cells_zyx)
        self.half = torch.as_tensor(half, dtype=torch.float32, device=renderer.device)
        self.seconds = 0.0
        self._occ_key = None
        self._occ = None
        self._summary: tuple | None = None  # (mask, its summary): see summary()

    def lookup(self, cells: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        """Per-cell values (a [cz, cy, cx] tensor) at world points [..., 3] (nearest cell)."""
        import torch.nn.functional as F

        shape = pts.shape[:-1]
        g = (pts / self.half).reshape(1, 1, 1, -1, 3)
        out = F.grid_sample(cells.view(1, 1, *cells.shape[-3:]), g, mode="nearest", padding_mode="border",
                            align_corners=False)
        return out.view(shape)

    def summary(self, occ: torch.Tensor) -> tuple[float, bool, bool, tuple | None]:
        """(occupied fraction, any cell, every cell, :meth:`occupied_box` or None) of a mask.

        Cached for the last mask seen: the tiles of a frame all ask about the same one.
        """
        cached = self._summary
        if cached is not None and cached[0] is occ:
            return cached[1]
        on = occ > 0.5
        anything = bool(on.any())
        result = (float(occ.mean()), anything, bool(on.all()), self.occupied_box(occ) if anything else None)
        self._summary = (occ, result)
        return result

    def occupied_box(self, occ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World-space (min, max) corners of the cells where ``occ`` is set."""
        import torch

        zyx = torch.nonzero(occ > 0.5)
        cells = torch.as_tensor(self.cells_zyx[::-1], dtype=torch.float32, device=occ.device)
        first = zyx.min(0).values.flip(0).float()
        last = zyx.max(0).values.flip(0).float() + 1.0
        size = 2.0 * self.half / cells
        return -self.half + first * size, -self.half + last * size

    def opacity_occupancy(self, tf: TransferFunction, lut_alpha: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
        """Per cell (as 0/1 float [cz, cy, cx]): can the TF give an opacity above ``floor`` in [cmin, cmax]?"""
        import torch

        key = (tf.value_range, float(floor), lut_alpha.cpu().numpy().tobytes())
        if self._occ_key == key:
            return self._occ
        n = lut_alpha.shape[0]
        lo, hi = tf.value_range
        i0 = torch.clamp(torch.floor((self.cmin - lo) / (hi - lo) * (n - 1)), 0, n - 1).long()
        i1 = torch.clamp(torch.ceil((self.cmax - lo) / (hi - lo) * (n - 1)), 0, n - 1).long()
        # next_nonzero[i]: the first LUT index >= i with opacity > 0 (n when none)
        a = lut_alpha.cpu().numpy()
        idx = np.where(a > floor, np.arange(n), n)
        next_nonzero = torch.as_tensor(np.minimum.accumulate(idx[::-1])[::-1].copy(), device=self.cmin.device)
        occ = (next_nonzero[i0] <= i1).float().view(self.cells_zyx)
        self._occ_key, self._occ = key, occ
        return occ

"""Fast trilinear sampling of stacks of 3D grids on the CPU (and GPU) via one 2D ``grid_sample`` call.

PyTorch's 3D ``grid_sample`` CPU kernel is scalar; the 2D kernel is vectorised and several times
faster. A 3D grid ``[C, D, H, W]`` is therefore laid out as a 2D image of ``2C`` channels whose
rows are (z, y) pairs: block b (b = 0 .. D) holds slice ``b - 1`` in channels ``0..C-1`` and slice
``b`` in channels ``C..2C-1`` (zero slices beyond both ends), each block is ``H`` rows followed by
one zero row. A point with ``z0 = floor(z)`` is sampled bilinearly once in block ``z0 + 1``, which
gives both neighbouring slices at once, and the two halves are lerped along z. The zero rows and
slices reproduce ``padding_mode='zeros'``: a point outside the grid's box blends with (or lands
entirely in) zero padding, as ``F.grid_sample(..., align_corners=True)`` does. (Pairing slices in
channels rather than sampling 2N points halves the per-point weight computation, which dominates.)

The result equals 3D ``grid_sample`` (trilinear, zeros, align_corners=True) up to float32 rounding of
the folded row coordinate (about 1e-4 voxel), and its backward is grid_sample's vectorised 2D backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import FunctionCtx


def fold_grids(grids: torch.Tensor) -> torch.Tensor:
    """Lay out ``grids [G, C, D, H, W]`` as the 2D image ``[G, 2C, (D + 1) * (H + 1), W]`` (differentiable)."""
    g, c, d, h, w = grids.shape
    padded = F.pad(grids, (0, 0, 0, 1, 1, 1))  # one zero row after each slice, one zero slice at each end
    paired = torch.cat([padded[:, :, :-1], padded[:, :, 1:]], dim=1)
    return paired.reshape(g, 2 * c, (d + 1) * (h + 1), w)


def folded_coordinates(local: torch.Tensor, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn planar normalised coordinates ``local [G, 3, N]`` (x, y, z) into grid_sample coordinates.

    Returns ``(coords [G, 1, N, 2], fz [G, 1, N])``; ``fz`` is the lerp weight of slice floor(z) + 1.
    No gradient flows to ``local``.
    """
    d, h, w = shape
    g, _, n = local.shape
    rows = (d + 1) * (h + 1)
    s = 2.0 / (rows - 1)  # one folded row in normalised units
    with torch.no_grad():
        out = torch.empty(g, n, 2, dtype=local.dtype, device=local.device)
        out[:, :, 0] = local[:, 0]
        # y in folded-row units, clamped one row beyond each edge: there it lies on a zero row
        yv = (local[:, 1] + 1.0).mul_(0.5 * (h - 1) * s).clamp_(-s, h * s)
        zv = (local[:, 2] + 1.0).mul_(0.5 * (d - 1)).clamp_(-1.0, float(d))
        z0 = zv.floor().clamp_(max=float(d - 1))
        fz = zv.sub_(z0)
        # slices z0 and z0 + 1 sit together in folded block z0 + 1
        out[:, :, 1] = z0.add_(1.0).mul_((h + 1) * s).add_(yv).sub_(1.0)
        return out.view(g, 1, n, 2), fz.unsqueeze(1)


def folded_coordinates_affine(matrices: torch.Tensor, points: torch.Tensor,
                              shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`folded_coordinates` of ``local = matrices[:, :3] @ [points, 1]`` without forming ``local``.

    ``matrices [G, 3, 4]`` map global (x, y, z, 1) to each grid's local [-1, 1] coordinates; the
    voxel scalings are folded into them so one small matmul yields x (normalised), y (in folded-row
    units) and z (in voxels) for all grids.
    """
    d, h, w = shape
    g = matrices.shape[0]
    n = points.shape[0]
    rows = (d + 1) * (h + 1)
    s = 2.0 / (rows - 1)
    with torch.no_grad():
        sy, sz = 0.5 * (h - 1) * s, 0.5 * (d - 1)
        # scalars only (no small host tensors to copy over): the fit step is captured in a CUDA graph
        a = matrices.clone()  # [G, 3, 4] acting on (x, y, z, 1)
        a[:, 1].mul_(sy)
        a[:, 2].mul_(sz)
        a[:, 1, 3].add_(sy)
        a[:, 2, 3].add_(sz)
        homogeneous = torch.cat([points, torch.ones_like(points[:, :1])], dim=1)  # small: [N, 4]
        lin = (a.reshape(-1, 4) @ homogeneous.t()).view(g, 3, n)  # a plain matmul: no bias copy
        out = torch.empty(g, n, 2, dtype=points.dtype, device=points.device)
        out[:, :, 0] = lin[:, 0]
        yv = lin[:, 1].clamp_(-s, h * s)
        zv = lin[:, 2].clamp_(-1.0, float(d))
        z0 = zv.floor().clamp_(max=float(d - 1))
        fz = zv.sub_(z0)
        out[:, :, 1] = z0.add_(1.0).mul_((h + 1) * s).add_(yv).sub_(1.0)
        return out.view(g, 1, n, 2), fz.unsqueeze(1)


def sample_folded(image: torch.Tensor, coords: torch.Tensor, fz: torch.Tensor) -> torch.Tensor:
    """Sample a folded image at coordinates from :func:`folded_coordinates`; returns ``[G, C, N]``."""
    g, c = image.shape[:2]
    n = fz.shape[-1]
    both = F.grid_sample(image, coords, mode="bilinear", padding_mode="zeros", align_corners=True)
    return _SliceLerp.apply(both.view(g, c, n), fz)


class _SliceLerp(torch.autograd.Function):
    """``lerp(both[:, :C/2], both[:, C/2:], fz)``; its backward writes the gradient of ``both`` in one go.

    (Autograd's lerp-of-slices backward zero-fills a ``[G, C, N]`` gradient and adds each half into it.)
    """

    @staticmethod
    def forward(ctx: FunctionCtx, both: torch.Tensor, fz: torch.Tensor) -> torch.Tensor:
        half = both.shape[1] // 2
        ctx.save_for_backward(fz)
        return torch.lerp(both[:, :half], both[:, half:], fz)

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (fz,) = ctx.saved_tensors
        g, half, n = grad.shape
        out = torch.empty(g, 2 * half, n, dtype=grad.dtype, device=grad.device)
        upper = torch.mul(grad, fz, out=out[:, half:])
        torch.sub(grad, upper, out=out[:, :half])
        return out, None


def sample_grids(grids: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """Trilinear samples ``[G, C, N]`` of ``grids [G, C, D, H, W]`` at ``local [G, 3, N]`` (x, y, z in [-1, 1]).

    Zero outside each grid's box; gradients flow to ``grids`` only.
    """
    coords, fz = folded_coordinates(local, tuple(grids.shape[2:]))
    return sample_folded(fold_grids(grids), coords, fz)


def sample_grids_reference(grids: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """The same as :func:`sample_grids` through 3D ``F.grid_sample`` (slow on CPU; the test oracle)."""
    g, c = grids.shape[:2]
    n = local.shape[-1]
    pts = local.transpose(1, 2).reshape(g, 1, 1, n, 3)
    out = F.grid_sample(grids, pts, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.view(g, c, n)

"""Inference-only CPU sampler of APMGSRN's transformed feature grids, compiled with numba.

PyTorch's sampling path (``models/trilinear.py``: one folded 2D ``grid_sample`` per call) spends
most of its time on (grid, point) pairs that contribute nothing: APMGSRN's grids are placed
adaptively and shrink around the data, so a point lies inside only about a third of them (38 % of
the pairs along the rays of the 64³ plume field). This kernel tests each pair against its grid's box
first and writes zeros for the pairs outside; inside, it interpolates the 8 corners trilinearly,
two feature channels per box test. Points go in blocks of 256: a grid that the block's bounding box
misses is skipped for the whole block, and each grid's results for the block land in a small
planar scratch that is then copied point-major. It runs per thread on contiguous point ranges, so
points that come in ray order (the renderer's wavefronts) hit the same cells and stay in cache.

Layout: the grids are padded by one zero voxel on every side (``[G, C, D+2, H+2, W+2]`` flattened),
and each grid's 3x4 global-to-local matrix is rescaled to map global (x, y, z, 1) straight to padded
voxel coordinates (align_corners=True, as ``grid_sample`` in the reference path). A point strictly
inside the padded box blends real voxels with the zero padding exactly as ``padding_mode='zeros'``;
a point on or outside it gets exactly zero. NaN coordinates compare false and also give zero. The
index arithmetic only runs for points strictly inside, so every read is in bounds (bounds checks off).

The kernel holds no GIL; ranges of a call run on :func:`core.threads.cpu_map`'s workers (a pool of
plain threads that is safe to call from several threads at once, unlike numba's own ``prange``
work queue). Without numba (``VOLSIGHT_NO_NUMBA=1`` or not installed) :func:`available` is False and
the fields use the PyTorch path. Results agree with it to float32 rounding (about 1e-6 of the
feature scale, measured in tests/models/test_multigrid_cpu.py).
"""

from __future__ import annotations

import numpy as np
import torch

from core.jit import compiler

_MIN_POINTS_PER_WORKER = 4096
_BLOCK = 256  # points per block of the kernel (its planar scratch stays in L1)


# The kernels are plain functions here, compiled below when numba is usable. They are module-level
# functions (not closures) so that numba can cache the machine code on disk between runs.

def _corners(gch, b, sy, sz, fx, fy, fz):  # pragma: no cover - compiled
    p0 = gch[b] + fx * (gch[b + 1] - gch[b])
    p1 = gch[b + sy] + fx * (gch[b + sy + 1] - gch[b + sy])
    q0 = gch[b + sz] + fx * (gch[b + sz + 1] - gch[b + sz])
    q1 = gch[b + sz + sy] + fx * (gch[b + sz + sy + 1] - gch[b + sz + sy])
    u = p0 + fy * (p1 - p0)
    v = q0 + fy * (q1 - q0)
    return u + fz * (v - u)

def _one_grid(px, py, pz, a, g0, g1, out0, out1, two, wp, hp, dp):  # pragma: no cover - compiled
    # one grid over a range of points (1D views); channel 1 only when ``two``
    sy = wp
    sz = hp * wp
    zero = np.float32(0.0)
    xm = np.float32(wp - 1)
    ym = np.float32(hp - 1)
    zm = np.float32(dp - 1)
    a0, a1, a2, a3, a4, a5 = a[0], a[1], a[2], a[3], a[4], a[5]
    a6, a7, a8, a9, a10, a11 = a[6], a[7], a[8], a[9], a[10], a[11]
    for i in range(px.shape[0]):
        x = a0 * px[i] + a1 * py[i] + a2 * pz[i] + a3
        y = a4 * px[i] + a5 * py[i] + a6 * pz[i] + a7
        z = a8 * px[i] + a9 * py[i] + a10 * pz[i] + a11
        if not (x > zero and x < xm and y > zero and y < ym and z > zero and z < zm):
            out0[i] = zero
            if two:
                out1[i] = zero
            continue
        xf = np.floor(x)
        yf = np.floor(y)
        zf = np.floor(z)
        b = np.int64(zf) * sz + np.int64(yf) * sy + np.int64(xf)
        out0[i] = _corners(g0, b, sy, sz, x - xf, y - yf, z - zf)
        if two:
            out1[i] = _corners(g1, b, sy, sz, x - xf, y - yf, z - zf)

def _centre_half(v):  # pragma: no cover - compiled
    lo = v[0]
    hi = v[0]
    for i in range(1, v.shape[0]):
        lo = min(lo, v[i])
        hi = max(hi, v[i])
    return 0.5 * (lo + hi), 0.5 * (hi - lo)

def _box_outside(a, cx, cy, cz, hx, hy, hz, wp, hp, dp):  # pragma: no cover - compiled
    # each padded voxel coordinate of the box spans centre +- radius (|A| h): outside if it
    # misses (0, size - 1) on any axis; NaN bounds compare false and never skip
    limits = (wp - 1, hp - 1, dp - 1)
    for j in range(3):
        centre = a[4 * j] * cx + a[4 * j + 1] * cy + a[4 * j + 2] * cz + a[4 * j + 3]
        radius = abs(a[4 * j]) * hx + abs(a[4 * j + 1]) * hy + abs(a[4 * j + 2]) * hz
        if centre + radius <= 0.0 or centre - radius >= limits[j]:
            return True
    return False

def _sample_range(points_t, matrices, grids, out, lo, hi, wp, hp, dp):  # pragma: no cover - compiled
    # blocks of points: each grid's pass over a block writes planar rows of a small scratch (in L1),
    # which is then copied point-major into ``out [N, G * C]``
    n_chan = grids.shape[1]
    n_feat = out.shape[1]
    scratch = np.empty((n_feat, _BLOCK), np.float32)
    for s0 in range(lo, hi, _BLOCK):
        s1 = min(hi, s0 + _BLOCK)
        m = s1 - s0
        px = points_t[0, s0:s1]
        py = points_t[1, s0:s1]
        pz = points_t[2, s0:s1]
        # the block's bounding box (centre, half extents): a grid it cannot touch is skipped whole
        cx, hx = _centre_half(px)
        cy, hy = _centre_half(py)
        cz, hz = _centre_half(pz)
        for k in range(grids.shape[0]):
            if _box_outside(matrices[k], cx, cy, cz, hx, hy, hz, wp, hp, dp):
                scratch[k * n_chan:(k + 1) * n_chan, :m] = 0.0
                continue
            c = 0
            while c < n_chan:  # channels in pairs (one box test and weight set for both)
                two = c + 1 < n_chan
                c1 = c + 1 if two else c
                _one_grid(px, py, pz, matrices[k], grids[k, c], grids[k, c1], scratch[k * n_chan + c, :m],
                          scratch[k * n_chan + c1, :m], two, wp, hp, dp)
                c += 2
        for i in range(m):
            for f in range(n_feat):
                out[s0 + i, f] = scratch[f, i]


_JIT = compiler()  # no fast-math assumptions about NaN/inf: the box tests must see them
if _JIT is not None:  # the callees first: a kernel resolves the others as compiled globals
    _corners = _JIT(_corners)
    _one_grid = _JIT(_one_grid)
    _centre_half = _JIT(_centre_half)
    _box_outside = _JIT(_box_outside)
    _sample_range = _JIT(_sample_range)


def _kernel():
    """The compiled kernel, or None without numba."""
    return _sample_range if _JIT is not None else None


def available() -> bool:
    """Whether the compiled sampler can be used (numba importable and not disabled)."""
    return _kernel() is not None


class MultiGridSampler:
    """Samples ``grids [G, C, D, H, W]`` placed by ``matrices [G, 3, 4]`` (global -> local [-1, 1]) at points.

    Built from detached copies: rebuild it when the parameters change (``APMGSRN`` keys its cached
    sampler on the parameters' versions).
    """

    def __init__(self, grids: torch.Tensor, matrices: torch.Tensor):
        kernel = _kernel()
        if kernel is None:
            raise RuntimeError("the numba sampler is not available (numba missing or VOLSIGHT_NO_NUMBA set)")
        self._run = kernel
        g, c, d, h, w = grids.shape
        padded = torch.nn.functional.pad(grids.detach().float().cpu(), (1, 1, 1, 1, 1, 1))
        self.grids = np.ascontiguousarray(padded.reshape(g, c, -1).numpy())
        self.dims = (w + 2, h + 2, d + 2)
        m = matrices.detach().double().cpu()[:, :3, :]
        half = torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0, (d - 1) / 2.0], dtype=torch.float64)
        a = m * half[None, :, None]
        a[:, :, 3] += half + 1.0  # local -1 -> voxel 0 -> padded index 1
        self.matrices = np.ascontiguousarray(a.reshape(g, 12).float().numpy())
        self.n_features = g * c

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """Planar features ``[G * C, N]`` (grid-major) at ``points [N, 3]`` (x, y, z), float32 on the CPU.

        The result is the transposed view of point-major memory ``[N, G * C]``: what the decoder's
        matmuls read (and convert to bfloat16) without a transposing copy.
        """
        from core.threads import cpu_map, workers

        pts_t = np.ascontiguousarray(points.detach().to("cpu", torch.float32).numpy().T)
        n = pts_t.shape[1]
        out = np.empty((n, self.n_features), dtype=np.float32)
        wp, hp, dp = self.dims
        parts = max(1, min(workers(), n // _MIN_POINTS_PER_WORKER))
        bounds = [n * k // parts for k in range(parts + 1)]

        def run(k: int) -> None:
            self._run(pts_t, self.matrices, self.grids, out, bounds[k], bounds[k + 1], wp, hp, dp)

        if parts == 1:
            run(0)
        else:
            cpu_map(run, range(parts))
        return torch.from_numpy(out).t()

"""The per-method wavefronts of the torch ray-marcher (a mixin of ``renderer.raymarch.FieldRenderer``).

Rays advance together in depth chunks of ``depth_chunk`` samples: each chunk queries the field
only where needed, then ``translucent`` composites front to back (early termination, occupancy
skipping), ``mip`` keeps the running maximum (cells whose max is not above it are skipped),
``attenuated_mip`` weights by the accumulated value, and ``iso`` finds the first crossing of the
threshold, refines it by bisection and shades it. The mixin relies on the renderer's ``device``,
``voxel``, ``value_range``, ``occupancy()`` and ``_query()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from renderer.transfer import TransferFunction, corrected_opacity

if TYPE_CHECKING:
    import torch

    from renderer.raymarch import MarchSettings, MarchStats

LUT_SIZE = 1024


class WavefrontMarches:
    """``_translucent``, ``_mip``, ``_attenuated_mip`` and ``_iso`` over a set of rays (see the module docstring)."""

    def _lut(self, tf: TransferFunction, step_in_voxels: float):
        lut = tf.lut_torch(LUT_SIZE, self.device)
        lut[:, 3] = corrected_opacity(lut[:, 3], step_in_voxels)
        return lut

    @staticmethod
    def _lookup(lut, tf: TransferFunction, vals):
        import torch

        lo, hi = tf.value_range
        n = lut.shape[0]
        x = ((vals - lo) * ((n - 1) / (hi - lo))).clamp_(0.0, n - 1)
        i0 = x.long().clamp_(max=n - 2)  # x >= 0: truncation is floor
        f = (x - i0).unsqueeze(-1)
        # rows i0 and i0 + 1 side by side: one gather instead of two
        pairs = torch.cat([lut[:-1], lut[1:]], dim=1)[i0]
        return torch.lerp(pairs[..., :4], pairs[..., 4:], f)

    def _chunk(self, ray: _Rays, active, k: int, K: int):
        """Sample positions [A, K, 3], their ray parameters and validity for the chunk starting at step k."""
        import torch

        ks = torch.arange(k, k + K, device=self.device, dtype=torch.float32)
        ts = ray.t0[active, None] + ks[None] * ray.step
        valid = ts < ray.tfar[active, None]
        pts = ray.o[active, None, :] + ts[..., None] * ray.d[active, None, :]
        return pts, ts, valid

    def _translucent(self, ray: _Rays, tf, st: MarchSettings, bg, stats: MarchStats):
        import torch

        step_vox = ray.step / self.voxel
        lut = self._lut(tf, step_vox)
        n = ray.o.shape[0]
        acc = torch.zeros(n, 3, device=self.device)
        trans = torch.ones(n, device=self.device)
        occ = None
        if st.skip_empty:
            grid = self.occupancy(st)
            floor = float(corrected_opacity(np.array(st.min_opacity), step_vox)) if st.min_opacity > 0 else 0.0
            occ = grid.opacity_occupancy(tf, lut[:, 3].contiguous(), floor)
            fraction, anything, everything, box = grid.summary(occ)
            stats.extra["occupied_cells"] = fraction
            if not anything:
                return bg.expand(n, 3).clone()
            # march only through the bounding box of the occupied cells, on the same sample lattice
            t_in, t_out = _slab_box(ray.o, ray.d, *box)
            shift = torch.clamp(torch.ceil((t_in - ray.t0) / ray.step), min=0.0)
            ray = _Rays(ray.o, ray.d, ray.tnear, torch.minimum(ray.tfar, t_out), ray.t0 + shift * ray.step, ray.step)
            if everything:
                occ = None  # every cell can contribute: no per-sample lookups (same samples, same image)
        stop = 1.0 - st.early_termination if st.early_termination is not None else -1.0
        # per-ray state of the rays still marching, kept compact so each chunk reads contiguous rows
        ids = torch.arange(n, device=self.device)
        o, d, t0, tfar = ray.o, ray.d, ray.t0, ray.tfar
        colour = torch.zeros(n, 3, device=self.device)
        through_all = torch.ones(n, device=self.device)
        K = st.depth_chunk
        ks = torch.arange(K, device=self.device, dtype=torch.float32) * ray.step
        k = 0
        fast_composite = False
        if self.device.type == "cpu" and st.fast_composite:
            from renderer import composite_cpu  # imports numba: not at start-up

            fast_composite = composite_cpu.available()
            composite_chunk = composite_cpu.composite_chunk
        while ids.numel():
            ts = (t0 + k * ray.step)[:, None] + ks[None]  # [A, K]
            valid = ts < tfar[:, None]
            pts = torch.addcmul(o[:, None, :], ts[..., None], d[:, None, :])  # [A, K, 3]
            need = valid
            if occ is not None:
                need = need & (grid.lookup(occ, pts) > 0.5)
            stats.samples_marched += int(valid.sum())
            n_need = int(need.sum())
            stats.samples_queried += n_need
            every = n_need == need.numel()  # the common case: every sample of every ray in the chunk
            if every:
                vals = self._query(pts.view(-1, 3), st)
            else:
                # query the needed samples only; the others get opacity 0 (their colour is then unused)
                vals = torch.zeros(need.numel(), device=self.device)
                if n_need:
                    flat = need.view(-1).nonzero().squeeze(1)
                    vals.index_copy_(0, flat, self._query(pts.view(-1, 3).index_select(0, flat), st))
            if fast_composite:  # one pass per ray (renderer/composite_cpu.py); same result
                composite_chunk(vals.view(need.shape), None if every else need, lut, tf.value_range, colour,
                                through_all)
            else:
                rgba = self._lookup(lut, tf, vals).view(*need.shape, 4)
                alpha = rgba[..., 3] if every else rgba[..., 3].masked_fill_(~need, 0.0)
                through = _flush_tiny(torch.cumprod(1.0 - alpha, dim=1))
                before = _flush_tiny(torch.cat([through_all[:, None], through[:, :-1] * through_all[:, None]], dim=1))
                colour += torch.einsum("ak,akc->ac", before * alpha, rgba[..., :3])
                through_all = _flush_tiny(through_all * through[:, -1])
            k += K
            alive = (t0 + k * ray.step < tfar) & (through_all > stop)
            if not bool(alive.all()):
                done = ~alive
                acc[ids[done]] = colour[done]
                trans[ids[done]] = through_all[done]
                keep = torch.nonzero(alive).squeeze(1)
                ids, o, d, t0, tfar = ids[keep], o[keep], d[keep], t0[keep], tfar[keep]
                colour, through_all = colour[keep], through_all[keep]
        return acc + trans[:, None] * bg

    def _mip(self, ray: _Rays, tf, st: MarchSettings, bg, stats: MarchStats):
        import torch

        n = ray.o.shape[0]
        best = torch.full((n,), -math.inf, device=self.device)
        active = torch.arange(n, device=self.device)
        grid = self.occupancy(st) if st.skip_empty else None
        hi = self.value_range[1]
        k, K = 0, st.depth_chunk
        while active.numel():
            pts, ts, valid = self._chunk(ray, active, k, K)
            need = valid
            if grid is not None:
                # a cell whose max is not above the ray's running max cannot change the result
                cell_max = grid.lookup(grid.cmax, pts)
                need = need & ((cell_max > best[active, None]) | torch.isinf(best[active, None]))
            stats.samples_marched += int(valid.sum())
            vals = torch.full(need.shape, -math.inf, device=self.device)
            sel = pts[need]
            stats.samples_queried += sel.shape[0]
            vals[need] = self._query(sel, st)
            best[active] = torch.maximum(best[active], vals.max(dim=1).values)
            k += K
            alive = (ray.t0[active] + k * ray.step < ray.tfar[active]) & (best[active] < hi)
            active = active[alive]
        lut = tf.lut_torch(LUT_SIZE, self.device)
        rgb = self._lookup(lut, tf, torch.nan_to_num(best, neginf=self.value_range[0]))[:, :3]
        # rays that crossed the box but never sampled (shorter than one step) show the background
        return torch.where(torch.isinf(best)[:, None], bg.expand(n, 3), rgb)

    def _attenuated_mip(self, ray: _Rays, tf, st: MarchSettings, bg, stats: MarchStats):
        import torch

        n = ray.o.shape[0]
        lo, hi = tf.value_range
        step_vox = ray.step / self.voxel
        best = torch.full((n,), -math.inf, device=self.device)
        total = torch.zeros(n, device=self.device)
        active = torch.arange(n, device=self.device)
        k, K = 0, st.depth_chunk
        while active.numel():
            pts, ts, valid = self._chunk(ray, active, k, K)
            stats.samples_marched += int(valid.sum())
            vals = torch.zeros(valid.shape, device=self.device)
            stats.samples_queried += int(valid.sum())
            vals[valid] = self._query(pts[valid], st)
            tn = torch_clamp01((vals - lo) / (hi - lo)) * valid
            summed = total[active, None] + torch.cumsum(step_vox * tn, dim=1)
            scale = torch.exp(-st.attenuation * (summed - 1.0))
            cand = torch.where(valid, vals * scale, torch.full_like(vals, -math.inf))
            best[active] = torch.maximum(best[active], cand.max(dim=1).values)
            total[active] = summed[:, -1]
            k += K
            # no later sample can beat the max once even the top of the range is attenuated below it
            alive = (ray.t0[active] + k * ray.step < ray.tfar[active]) & (
                best[active] <= hi * torch.exp(-st.attenuation * (total[active] - 1.0)))
            active = active[alive]
        lut = tf.lut_torch(LUT_SIZE, self.device)
        rgb = self._lookup(lut, tf, torch.nan_to_num(best, neginf=lo))[:, :3]
        return torch.where(torch.isinf(best)[:, None], bg.expand(n, 3), rgb)

    def _iso(self, ray: _Rays, tf, st: MarchSettings, bg, stats: MarchStats):
        import torch

        n = ray.o.shape[0]
        lo, hi = tf.value_range
        thr = st.threshold if st.threshold is not None else 0.5 * (lo + hi)
        hit_t = torch.full((n,), math.nan, device=self.device)
        active = torch.arange(n, device=self.device)
        grid = self.occupancy(st) if st.skip_empty else None
        k, K = 0, st.depth_chunk
        while active.numel():
            pts, ts, valid = self._chunk(ray, active, k, K)
            need = valid
            if grid is not None:
                need = need & (grid.lookup(grid.cmax, pts) >= thr)
            stats.samples_marched += int(valid.sum())
            vals = torch.full(need.shape, -math.inf, device=self.device)
            sel = pts[need]
            stats.samples_queried += sel.shape[0]
            vals[need] = self._query(sel, st)
            above = vals > thr
            first = torch.where(above.any(1), above.float().argmax(1), torch.full_like(active, -1))
            got = first >= 0
            hit_t[active[got]] = ts[got, first[got]]
            k += K
            alive = (~got) & (ray.t0[active] + k * ray.step < ray.tfar[active])
            active = active[alive]
        found = torch.nonzero(~torch.isnan(hit_t)).squeeze(1)
        out = bg.expand(n, 3).clone()
        if found.numel() == 0:
            return out
        o, d = ray.o[found], ray.d[found]
        # bisection between the previous step and the first sample above the threshold
        t_hi = hit_t[found]
        t_lo = torch.maximum(t_hi - ray.step, ray.tnear[found])
        for _ in range(6):
            mid = 0.5 * (t_lo + t_hi)
            above = self._query(o + mid[:, None] * d, st) > thr
            t_hi = torch.where(above, mid, t_hi)
            t_lo = torch.where(above, t_lo, mid)
        stats.samples_queried += 6 * found.numel()
        p = o + t_hi[:, None] * d
        # central-difference gradient for a headlight Blinn-Phong shading
        eps = 0.75 * self.voxel
        offs = torch.eye(3, device=self.device) * eps
        g = torch.stack([self._query(p + offs[i], st) - self._query(p - offs[i], st)
                         for i in range(3)], dim=1)
        stats.samples_queried += 6 * found.numel()
        normal = g / g.norm(dim=1, keepdim=True).clamp(min=1e-12)
        ndotl = (-(normal * d).sum(1)).abs()
        base = self._lookup(tf.lut_torch(LUT_SIZE, self.device), tf, torch.full_like(t_hi, thr))[:, :3]
        colour = base * (0.25 + 0.75 * ndotl[:, None]) + 0.25 * ndotl[:, None] ** 40
        out[found] = colour.clamp(0.0, 1.0)
        return out


@dataclass
class _Rays:
    o: Any
    d: Any
    tnear: Any
    tfar: Any
    t0: Any
    step: float


def _flush_tiny(x):
    """Transmittances below 1e-30 set to 0: without early termination they would sink into float32
    denormals, on which every later multiply runs 10-100x slower (a 256-sample frame took 9 s instead
    of 0.8 s); their contribution is far below one 8-bit level."""
    return x.masked_fill_(x < 1e-30, 0.0)


def torch_clamp01(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0.0, 1.0)


def _slab_box(o, d, lo, hi):
    """Ray–box (slab) intersection with [lo, hi]: entry (clamped to ≥ 0) and exit parameters."""
    import torch

    inv = 1.0 / torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
    t1 = (lo - o) * inv
    t2 = (hi - o) * inv
    tnear = torch.minimum(t1, t2).max(dim=1).values.clamp(min=0.0)
    tfar = torch.maximum(t1, t2).min(dim=1).values
    return tnear, tfar

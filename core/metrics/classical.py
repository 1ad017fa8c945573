"""Classical full-reference metrics on volumes: MSE, RMSE, MAE, SSD, PSNR, SSIM (3D), NCC, LCC.

All work on the raw values by default (no preprocessing); ``normalize=True`` first maps the
pair jointly to [-1, 1] and ``resample=N`` resamples both (trilinear) — the same shared
preprocessing as the learned metrics. Multi-channel (vector) data: values are averaged over
channels (SSIM/LCC per channel, then averaged). Per-voxel maps (``Distance.voxel_map``,
``[D, H, W]``): squared error (MSE, SSD), absolute error (MAE), the SSIM map, the local
correlation map (LCC).

Which are metrics in the mathematical sense (non-negative, symmetric, ``d(x,x)=0``, triangle
inequality): RMSE (a scaled L2 norm) and MAE (a scaled L1 norm) are; MSE and SSD are not (squares
of a norm break the triangle inequality); PSNR, SSIM, NCC and LCC are similarities (larger = closer),
not distances.

Definitions:
- PSNR = 10 log10(R^2 / MSE) with R the data range: the ``data_range`` option, else the joint
  range of the pair (max - min over both inputs). Identical inputs give ``inf``.
- SSIM: Wang et al. with a Gaussian window (sigma 1.5, truncated at 3.5 sigma = 11 taps),
  K1 = 0.01, K2 = 0.03, population covariances, symmetric ('reflect') boundary, mean over the
  interior (a border of 5 voxels cropped), averaged over channels — the settings of
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=R)``. R as for PSNR.
- NCC: global Pearson correlation of all values; 1 when both inputs are constant and equal,
  0 when one is constant and they differ.
- LCC: mean local correlation ``(s_ab + c) / (s_a s_b + c)`` in a ``window``^3 box (default 9),
  c = (0.03 R)^2 / 2 (SSIM's structure term; exactly 1 for identical inputs, defined in flat regions).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from core.errors import MetricError
from core.metrics.base import Distance, Metric
from core.metrics.preprocess import Preprocessing, prepare_pair
from core.metrics.registry import register
from core.volume import Volume

_RAW = Preprocessing(normalize=False, channels=None)


def _pair_arrays(metric: Metric, a: Volume, b: Volume, options: dict[str, Any], allowed: set[str]):
    """Check and (optionally) preprocess a pair; returns float32 torch tensors ``[C, D, H, W]`` (every metric
    here goes to float64 slab by slab)."""
    unknown = set(options) - allowed - {"normalize", "resample", "interpolation"}
    if unknown:
        raise MetricError(f"{metric.name}: unknown option(s) {', '.join(sorted(unknown))}")
    prep = _RAW.with_options(**{k: options[k] for k in ("normalize", "resample", "interpolation") if k in options})
    if prep.resample is None:
        metric.check_pair(a, b)
    elif a.channels != b.channels:
        raise MetricError(f"{metric.name}: channel counts differ ({a.channels} vs {b.channels})")
    ta, tb = prepare_pair(a.data, b.data, prep)
    return ta, tb, prep


def _slab_pairs(ta, tb):
    """``(d0, d1, a, b)``: float64 slabs ``[C, d, H, W]`` of a pair of ``[C, D, H, W]`` tensors along D.

    The point-wise metrics reduce slab by slab: whole-volume float64 copies of a 512³ pair (1 GiB
    each, and their differences and squares) cost 18 s of allocation and page faults for an MSE
    that reads the data once.
    """
    import torch

    c, depth, h, w = ta.shape
    step = max(1, SLAB_BYTES // (8 * c * h * w))
    for d0 in range(0, depth, step):
        d1 = min(depth, d0 + step)
        # copies (also of float64 input): the callers work in place on them
        yield d0, d1, ta[:, d0:d1].to(torch.float64, copy=True), tb[:, d0:d1].to(torch.float64, copy=True)


def _pointwise(ta, tb, error, voxel_map: str | None = None) -> tuple[float, np.ndarray | None]:
    """The float64 sum over every value of ``error(a - b)`` and, when asked, the per-voxel map over the
    channels (``'mean'`` or ``'sum'``, float32 ``[D, H, W]``), slab by slab (:func:`_slab_pairs`)."""
    total = 0.0
    vmap = np.empty(ta.shape[1:], np.float32) if voxel_map else None
    for d0, d1, a, b in _slab_pairs(ta, tb):
        e = error(a.sub_(b))
        total += float(e.sum())
        if vmap is not None:
            vmap[d0:d1] = (e.mean(0) if voxel_map == "mean" else e.sum(0)).float().numpy()
    return total, vmap


def _data_range(ta, tb, options: dict[str, Any]) -> float:
    r = options.get("data_range")
    if r is not None:
        if float(r) <= 0:
            raise MetricError(f"data_range must be positive, got {r}")
        return float(r)
    lo = min(float(ta.min()), float(tb.min()))
    hi = max(float(ta.max()), float(tb.max()))
    return hi - lo


SLAB_BYTES = 32 << 20  # one float64 working array per slab of a windowed metric (about 11 are alive)


def local_moments(a: np.ndarray, b: np.ndarray, kernel: np.ndarray) -> list:
    """Windowed means of ``a``, ``b``, ``a*a``, ``b*b`` and ``a*b`` (float64 ``[D, H, W]`` arrays).

    The window is the separable 1D ``kernel`` along each axis, with half-sample symmetric
    boundaries (scipy's 'reflect', as scikit-image's SSIM). scipy's 1D correlation filters in
    place into two buffers per moment; the five moments run on parallel threads (scipy releases
    the GIL).
    """
    from scipy import ndimage

    from core.threads import cpu_map

    k = np.asarray(kernel, dtype=np.float64)

    def moment(which: int):
        src = (a, b)[which] if which < 2 else np.multiply(*((a, a), (b, b), (a, b))[which - 2])
        out = np.empty_like(a)
        tmp = np.empty_like(a) if which < 2 else src  # a product is scratch once it has been read
        ndimage.correlate1d(src, k, axis=0, output=out, mode="reflect")
        ndimage.correlate1d(out, k, axis=1, output=tmp, mode="reflect")
        ndimage.correlate1d(tmp, k, axis=2, output=out, mode="reflect")
        return out

    return cpu_map(moment, range(5))


def windowed_map(a: np.ndarray, b: np.ndarray, kernel: np.ndarray, combine: Callable[..., np.ndarray],
                 crop: int = 0) -> tuple[np.ndarray, float]:
    """A per-voxel map from the local moments of ``a`` and ``b`` ([D, H, W]), computed slab by slab along D.

    ``combine(mu_a, mu_b, aa, bb, ab)`` turns one slab's moments (float64, may be overwritten) into
    its map. Each slab is filtered with a halo of the kernel's radius, where the symmetric boundary
    of the slab only disturbs the halo, so the result equals the whole-volume computation while the
    working memory stays near ``11 * SLAB_BYTES`` at any size. Returns the float32 map and the
    float64 mean of the map without a border of ``crop`` voxels.
    """
    depth, h, w = a.shape
    radius = (len(kernel) - 1) // 2
    slab = max(1, SLAB_BYTES // (8 * h * w))
    out = np.empty((depth, h, w), np.float32)
    inner = (slice(crop, h - crop), slice(crop, w - crop))
    total, count = 0.0, 0
    for d0 in range(0, depth, slab):
        d1 = min(depth, d0 + slab)
        lo, hi = max(0, d0 - radius), min(depth, d1 + radius)
        moments = local_moments(np.asarray(a[lo:hi], np.float64), np.asarray(b[lo:hi], np.float64), kernel)
        part = combine(*(m[d0 - lo:d1 - lo] for m in moments))
        out[d0:d1] = part
        start, stop = max(crop, d0), min(depth - crop, d1)  # this slab's rows inside the crop
        if stop > start:
            rows = part[start - d0:stop - d0][(slice(None), *inner)]
            total += float(rows.sum())
            count += rows.size
    return out, total / max(count, 1)


def _square(d):
    return d.square_()


def _absolute(d):
    return d.abs_()


def gaussian_kernel(sigma: float, truncate: float = 3.5) -> np.ndarray:
    """Normalised 1D Gaussian of radius ``int(truncate * sigma + 0.5)`` (scipy's rule)."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


class _Classical(Metric):
    learned = False
    dims = (3,)
    channels = (1, 3)
    preprocessing: ClassVar[str] = "none (raw values); normalize=True: joint min-max to [-1, 1]; resample=N: trilinear"
    input_range = (-1.0, 1.0)
    options: ClassVar[set[str]] = set()
    properties: ClassVar[str] = ""

    @classmethod
    def describe(cls) -> dict[str, Any]:
        d = super().describe()
        d["properties"] = cls.properties or (
            "metric" if cls.is_metric else "similarity (larger = closer), not a metric" if cls.kind == "similarity"
            else "not a metric"
        )
        return d

    def _info(self, prep: Preprocessing, **extra: Any) -> dict[str, Any]:
        return {"normalize": prep.normalize, **extra}


@register
class MSE(_Classical):
    """Mean squared error over all voxels and channels (not a metric: the triangle inequality fails)."""

    name = "mse"
    label = "MSE"
    properties = "not a metric (non-negative, symmetric, d(x,x)=0, but no triangle inequality; sqrt gives RMSE)"
    has_voxel_map = True

    def distance(self, a: Volume, b: Volume, *, features: bool = False, **options: Any) -> Distance:
        ta, tb, prep = _pair_arrays(self, a, b, options, self.options)
        total, vmap = _pointwise(ta, tb, _square, "mean")
        return Distance(self.name, total / ta.numel(), voxel_map=vmap, info=self._info(prep))


@register
class RMSE(_Classical):
    """Root mean squared error (a metric: scaled L2 norm of the difference)."""

    name = "rmse"
    label = "RMSE"
    is_metric = True
    has_voxel_map = True

    def distance(self, a: Volume, b: Volume, *, features: bool = False, **options: Any) -> Distance:
        ta, tb, prep = _pair_arrays(self, a, b, options, self.options)
        total, vmap = _pointwise(ta, tb, _square, "mean")
        return Distance(self.name, math.sqrt(total / ta.numel()), voxel_map=vmap, info=self._info(prep))


@register
class MAE(_Classical):
    """Mean absolute error (a metric: scaled L1 norm of the difference)."""

    name = "mae"
    label = "MAE"
    is_metric = True
    has_voxel_map = True

    def distance(self, a: Volume, b: Volume, *, features: bool = False, **options: Any) -> Distance:
        ta, tb, prep = _pair_arrays(self, a, b, options, self.options)
        total, vmap = _pointwise(ta, tb, _absolute, "mean")
        return Distance(self.name, total / ta.numel(), voxel_map=vmap, info=self._info(prep))


@register
class MaxError(_Classical):
    """Largest absolute difference over all voxels and channels (L-infinity norm: a metric); ``info["at"]``
    is the voxel (z, y, x) where it occurs (the first in memory order when several share it)."""

    name = "maxerr"
    label = "Max error"
    is_metric = True
    has_voxel_map = True
    map_summary = "max"  # a slice's largest error, as the value is the volume's

    def distance(self, a: Volume, b: Volume, *, features: bool = False, **options: Any) -> Distance:
        ta, tb, prep = _pair_arrays(self, a, b, options, self.options)
        _, _, h, w = ta.shape
        vmap = np.empty(ta.shape[1:], np.float32)
        best, at = -1.0, (0, 0, 0)
        for d0, d1, sa, sb in _slab_pairs(ta, tb):
            e = sa.sub_(sb).abs_().amax(dim=0)  # [d, H, W]: the largest over the channels
            vmap[d0:d1] = e.float().numpy()
            k = int(e.argmax())
            value = float(e.reshape(-1)[k])
            if value > best:
                best, at = value, (d0 + k // (h * w), (k // w) % h, k % w)
        return Distance(self.name, best, voxel_map=vmap, info=self._info(prep, at=list(at)))


@register
class SSD(_Classical):
    """Sum of squared differences over all voxels and channels (not a metric)."""

    name = "ssd"
    label = "SSD"
    properties = "not a metric (no triangle inequality)"
    has_voxel_map = True

    def distance(self, a: Volume, b: Volume, *, features: bool = False, **options: Any) -> Distance:
        ta, tb, prep = _pair_arrays(self, a, b, options, self.options)
        total, vmap = _pointwise(ta, tb, _square, "sum")
        return Distance(self.name, total, voxel_map=vmap, info=self._info(prep))


@register
class PSNR(_Classical):
    """Peak signal-to-noise ratio in dB, 10 log10(R^2/MSE); R = data_range or the pair's joint range (similarity)."""

    name = "psnr"
    label = "PSNR"
    kind = "similarity"
    options = {"data_range"}

    def distance(self, a: Volume, b: Volume, *, features: bool = False, **options: Any) -> Distance:
        ta, tb, prep = _pair_arrays(self, a, b, options, self.options)
        r = _data_range(ta, tb, options)
        mse = _pointwise(ta, tb, _square)[0] / ta.numel()
        if mse == 0.0:
            value = math.inf
        elif r == 0.0:
            value = -math.inf
        else:
            value = 10.0 * math.log10(r * r / mse)
        return Distance(self.name, value, kind="similarity", info=self._info(prep, data_range=r, mse=mse))


@register
class SSIM(_Classical):
    """Structural similarity in 3D with a Gaussian window (sigma 1.5), as scikit-image computes it (similarity)."""

    name = "ssim"
    label = "SSIM"
    kind = "similarity"
    has_voxel_map = True
    options = {"data_range", "sigma"}

    def distance(self, a: Volume, b: Volume, *, features: bool = False, **options: Any) -> Distance:
        ta, tb, prep = _pair_arrays(self, a, b, options, self.options)
        r = _data_range(ta, tb, options)
        sigma = float(options.get("sigma", 1.5))
        kernel = gaussian_kernel(sigma)
        pad = (kernel.size - 1) // 2
        if min(ta.shape[1:]) < kernel.size:
            raise MetricError(f"ssim: every axis needs at least {kernel.size} voxels, got {tuple(ta.shape[1:])}")
        # a zero joint range means both inputs are one and the same constant: identical, so SSIM is 1
        # (its limit); stabilisers of a unit range give exactly that instead of SSIM's 0 / 0
        c1, c2 = (0.01 * (r or 1.0)) ** 2, (0.03 * (r or 1.0)) ** 2

        def combine(mu_a: np.ndarray, mu_b: np.ndarray, va: np.ndarray, vb: np.ndarray,
                    cov: np.ndarray) -> np.ndarray:  # in place where possible: slabs are the working memory
            va -= mu_a * mu_a
            vb -= mu_b * mu_b
            cov -= mu_a * mu_b
            num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
            va += vb
            va += c2
            mu_a *= mu_a
            mu_b *= mu_b
            mu_a += mu_b
            mu_a += c1
            num /= mu_a * va
            return num

        values, total = [], None
        for ca, cb in zip(ta.numpy(), tb.numpy(), strict=True):  # channel by channel
            smap, value = windowed_map(ca, cb, kernel, combine, crop=pad)
            values.append(value)
            total = smap if total is None else np.add(total, smap, out=total)
        return Distance(self.name, float(np.mean(values)), kind="similarity",
                        voxel_map=total / np.float32(len(values)),
                        info=self._info(prep, data_range=r, sigma=sigma))


@register
class NCC(_Classical):
    """Global normalised cross-correlation (Pearson) of all values, in [-1, 1] (similarity)."""

    name = "ncc"
    label = "NCC"
    kind = "similarity"

    def distance(self, a: Volume, b: Volume, *, features: bool = False, **options: Any) -> Distance:
        ta, tb, prep = _pair_arrays(self, a, b, options, self.options)
        n = ta.numel()
        sums = [0.0, 0.0]
        for _, _, sa, sb in _slab_pairs(ta, tb):  # the means, then the centred moments: two passes
            sums[0] += float(sa.sum())
            sums[1] += float(sb.sum())
        mean_a, mean_b = sums[0] / n, sums[1] / n
        aa = bb = ab = 0.0
        for _, _, sa, sb in _slab_pairs(ta, tb):
            sa -= mean_a
            sb -= mean_b
            aa += float((sa * sa).sum())
            bb += float((sb * sb).sum())
            ab += float((sa * sb).sum())
        den = math.sqrt(aa * bb)
        if den == 0.0:
            value = 1.0 if bool((ta == tb).all()) else 0.0
        else:
            value = ab / den
        return Distance(self.name, value, kind="similarity", info=self._info(prep))


@register
class LCC(_Classical):
    """Mean local correlation in a box window (default 9^3), with SSIM's structure stabiliser (similarity)."""

    name = "lcc"
    label = "LCC"
    kind = "similarity"
    has_voxel_map = True
    options = {"window", "data_range"}

    def distance(self, a: Volume, b: Volume, *, features: bool = False, **options: Any) -> Distance:
        ta, tb, prep = _pair_arrays(self, a, b, options, self.options)
        w = int(options.get("window", 9))
        if w < 3 or w % 2 == 0:
            raise MetricError(f"lcc: window must be an odd size >= 3, got {w}")
        r = _data_range(ta, tb, options)
        c = ((0.03 * r) ** 2) / 2
        box = np.full(w, 1.0 / w)

        def combine(mu_a: np.ndarray, mu_b: np.ndarray, va: np.ndarray, vb: np.ndarray,
                    cov: np.ndarray) -> np.ndarray:
            if c <= 0:
                return np.ones_like(cov)
            va -= mu_a * mu_a
            vb -= mu_b * mu_b
            cov -= mu_a * mu_b
            np.maximum(va, 0, out=va)
            np.maximum(vb, 0, out=vb)
            va *= vb
            np.sqrt(va, out=va)
            va += c
            cov += c
            cov /= va
            return cov

        cmap, values = None, []
        for ca, cb in zip(ta.numpy(), tb.numpy(), strict=True):
            local, value = windowed_map(ca, cb, box, combine)
            values.append(value)
            cmap = local if cmap is None else np.add(cmap, local, out=cmap)
        cmap /= np.float32(ta.shape[0])
        return Distance(self.name, float(np.mean(values)), kind="similarity", voxel_map=cmap,
                        info=self._info(prep, window=w, data_range=r))

"""Shared, explicit preprocessing of metric inputs (2D and 3D alike).

Every learned metric prepares a pair the same three ways, in this order (the order of the
official VolSiM/LSiM ``computeDistance``):

1. **Joint min-max** of the pair to a target range (``[-1, 1]`` for VolSiM, ``[0, 255]`` for
   LSiM): one affine map for both inputs, from the minimum and maximum over both inputs (all
   channels, or each channel on its own with ``per_channel=True``). A constant pair (max == min)
   maps to the middle of the range (or to ``constant_value``) instead of dividing by zero — the
   official VolSiM code crashes there for 1-channel data. Each pair is normalised on its own:
   a pair evaluated inside a batch gets exactly its single-pair result (the official batched
   call normalises the whole batch jointly, which couples pairs; see notes §5).
2. **Resampling** to a working size (optional): ``"linear"`` = bi/trilinear with
   ``align_corners=True`` (torch, fast; first/last voxel centres map onto each other, the same
   grid mapping as ``scipy.ndimage.zoom``), ``"cubic"`` = ``scipy.ndimage.zoom(order=3)``
   per channel (what the official VolSiM ``interpolate=True`` uses; exact but slow — about 17 s
   per 128³ pair on one core), ``"nearest"`` = nearest neighbour on the same corner-aligned grid
   (LSiM's default ``order=0``). Non-cubic inputs resampled to a cube are stretched per axis.
3. **Channel repetition** 1 -> ``channels`` (the networks always see 3 channels).

Arrays are channel-first, ``[C, *spatial]`` (one item) — numpy arrays or torch tensors; the
functions return float32 torch tensors.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from core.errors import MetricError

if TYPE_CHECKING:
    import torch

Interpolation = Literal["linear", "cubic", "nearest"]
_INTERPOLATIONS = ("linear", "cubic", "nearest")


@dataclass(frozen=True)
class Preprocessing:
    """What a metric does to a pair before its network sees it."""

    normalize: bool = True
    value_range: tuple[float, float] = (-1.0, 1.0)
    per_channel: bool = False
    constant_value: float | None = None  # where a constant pair/channel lands; None = middle of value_range
    resample: int | tuple[int, ...] | None = None  # one size for every axis, or one per axis
    interpolation: Interpolation = "linear"
    channels: int | None = 3  # repeat single-channel data to this many channels; None = keep

    def describe(self) -> str:
        """One line for ``volsight metrics`` and docstrings."""
        parts = []
        if self.normalize:
            scope = "per channel" if self.per_channel else "over all channels"
            parts.append(f"joint min-max of the pair to [{self.value_range[0]:g}, {self.value_range[1]:g}] ({scope})")
        else:
            parts.append("no value normalisation")
        if self.resample:
            r = self.resample
            size = f"{r} per axis" if isinstance(r, (int, np.integer)) else "x".join(map(str, r))
            parts.append(f"resampled to {size} ({self.interpolation})")
        if self.channels:
            parts.append(f"1 channel repeated to {self.channels}")
        return "; ".join(parts)

    def with_options(self, **options: Any) -> Preprocessing:
        """Copy with the user's ``normalize`` / ``resample`` / ``interpolation`` options applied."""
        changes: dict[str, Any] = {}
        if options.get("normalize") is not None:
            changes["normalize"] = bool(options["normalize"])
        if "resample" in options:
            changes["resample"] = None if options["resample"] in (None, False, 0) else options["resample"]
        if options.get("interpolation") is not None:
            changes["interpolation"] = options["interpolation"]
        return replace(self, **changes) if changes else self


def _as_tensor(x: Any):
    import torch

    if isinstance(x, torch.Tensor):
        return x.to(torch.float32)
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if not arr.flags.writeable:
        # Volume data is read-only; nothing here writes into its input, so share the memory
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(arr)
    return torch.from_numpy(arr)


def working_size(resample: int | Sequence[int] | None, spatial_dims: int) -> tuple[int, ...] | None:
    """Normalise a resample option (one int for a cube/square, or one size per axis)."""
    if resample is None or resample is False:
        return None
    if isinstance(resample, bool):
        raise MetricError("resample needs a size (e.g. 64), not True")
    if isinstance(resample, (int, np.integer)):
        size = (int(resample),) * spatial_dims
    else:
        size = tuple(int(s) for s in resample)
    if len(size) != spatial_dims or any(s < 2 for s in size):
        raise MetricError(
            f"resample size {resample!r} does not fit {spatial_dims}D data (need {spatial_dims} sizes >= 2)"
        )
    return size


def _as_numpy(x: Any) -> np.ndarray:
    import torch

    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x, dtype=np.float32)


# Small elementwise steps run in numpy on purpose: torch parallelises even 64^3 reductions, and on a
# busy machine every parallel region waits for a time slice (measured: 36 ms vs 0.06 ms for min/max).


def _minmax_affine_np(lo: Any, hi: Any, value_range: tuple[float, float],
                      constant_value: float | None) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = _as_float64(lo), _as_float64(hi)
    t_lo, t_hi = float(value_range[0]), float(value_range[1])
    middle = 0.5 * (t_lo + t_hi) if constant_value is None else float(constant_value)
    span = hi - lo
    constant = span <= 0
    scale = np.where(constant, 0.0, (t_hi - t_lo) / np.where(constant, 1.0, span))
    shift = np.where(constant, middle, t_lo - lo * scale)
    return scale.astype(np.float32), shift.astype(np.float32)


def minmax_affine(lo: Any, hi: Any, value_range: tuple[float, float] = (-1.0, 1.0), *,
                  constant_value: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and shift (float32 tensors ``[K]``: per channel, or one) mapping ``[lo, hi]`` onto ``value_range``.

    ``lo``/``hi``: scalars, arrays or tensors; computed in float64. Where ``hi == lo`` the scale is 0
    and everything lands on ``constant_value`` (default: the middle of the range).
    """
    import torch

    scale, shift = _minmax_affine_np(lo, hi, value_range, constant_value)
    device = lo.device if isinstance(lo, torch.Tensor) else "cpu"
    return torch.from_numpy(scale).to(device), torch.from_numpy(shift).to(device)


def _as_float64(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _affine_into(out: np.ndarray, x: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    shape = (-1,) + (1,) * (x.ndim - 1)
    np.multiply(x, scale.reshape(shape), out=out)
    out += shift.reshape(shape)
    return out


def apply_affine(x: Any, scale: Any, shift: Any) -> torch.Tensor:
    """``x * scale + shift`` with per-channel (or scalar) ``scale``/``shift`` on ``[C, *spatial]``; float32 tensor.

    Torch inputs stay in torch (device and autograd kept); numpy inputs are done in numpy.
    """
    import torch

    if isinstance(x, torch.Tensor):
        shape = (-1,) + (1,) * (x.ndim - 1)
        sc = torch.as_tensor(scale, dtype=torch.float32, device=x.device).reshape(shape)
        sh = torch.as_tensor(shift, dtype=torch.float32, device=x.device).reshape(shape)
        return torch.addcmul(sh, x.to(torch.float32), sc)
    arr = _as_numpy(x)
    out = np.empty(arr.shape, np.float32)
    return torch.from_numpy(_affine_into(out, arr, _as_float32(scale), _as_float32(shift)))


def _as_float32(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def _bounds_np(arrays: Sequence[Any], per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    arrs = [_as_numpy(x) for x in arrays]
    if per_channel:
        axes = tuple(range(1, arrs[0].ndim))
        lo = np.min([a.min(axis=axes) for a in arrs], axis=0)
        hi = np.max([a.max(axis=axes) for a in arrs], axis=0)
    else:
        lo = np.array(min(float(a.min()) for a in arrs))
        hi = np.array(max(float(a.max()) for a in arrs))
    return lo.astype(np.float64), hi.astype(np.float64)


def value_bounds(*arrays: Any, per_channel: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint (min, max) over all arrays ``[C, *spatial]`` (per channel on request), as float64 tensors."""
    import torch

    lo, hi = _bounds_np(arrays, per_channel)
    return torch.from_numpy(lo), torch.from_numpy(hi)


def joint_minmax(a: Any, b: Any, value_range: tuple[float, float] = (-1.0, 1.0), *, per_channel: bool = False,
                 constant_value: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Map a pair ``[C, *spatial]`` jointly to ``value_range``; returns float32 tensors."""
    lo, hi = _bounds_np((a, b), per_channel)
    scale, shift = _minmax_affine_np(lo, hi, value_range, constant_value)
    return apply_affine(a, scale, shift), apply_affine(b, scale, shift)


def _corner_nearest_index(n_in: int, n_out: int):
    import torch

    if n_out == 1:
        return torch.zeros(1, dtype=torch.long)
    pos = torch.arange(n_out, dtype=torch.float64) * ((n_in - 1) / (n_out - 1))
    return torch.floor(pos + 0.5).clamp_(0, n_in - 1).long()


def resample(x: Any, size: Sequence[int], interpolation: Interpolation = "linear") -> torch.Tensor:
    """Resample ``[C, *spatial]`` (or ``[N, C, *spatial]``) to ``size`` on the corner-aligned grid."""
    import torch
    import torch.nn.functional as F

    t = _as_tensor(x)
    spatial = len(size)
    batched = t.ndim == spatial + 2
    if not batched and t.ndim != spatial + 1:
        raise MetricError(f"resample: array of shape {tuple(t.shape)} does not have {spatial} spatial axes")
    if tuple(t.shape[-spatial:]) == tuple(size):
        return t
    if interpolation not in _INTERPOLATIONS:
        raise MetricError(f"unknown interpolation {interpolation!r}; use one of {', '.join(_INTERPOLATIONS)}")
    tb = t if batched else t.unsqueeze(0)
    if interpolation == "linear":
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[spatial]
        out = F.interpolate(tb, size=tuple(size), mode=mode, align_corners=True)
    elif interpolation == "nearest":
        out = tb
        for axis, n_out in enumerate(size):
            dim = 2 + axis
            out = out.index_select(dim, _corner_nearest_index(out.shape[dim], n_out))
    else:  # cubic spline, as scipy.ndimage.zoom(order=3) in the official code
        from scipy.ndimage import zoom

        arr = tb.numpy()
        factors = [n_out / n_in for n_out, n_in in zip(size, arr.shape[2:], strict=True)]
        out_np = np.stack([np.stack([zoom(ch, factors, order=3) for ch in item]) for item in arr])
        out = torch.from_numpy(out_np.astype(np.float32, copy=False))
    return out if batched else out.squeeze(0)


def repeat_channels(x: Any, channels: int | None) -> torch.Tensor:
    """Repeat single-channel data ``[1, *spatial]`` to ``[channels, *spatial]``."""
    t = _as_tensor(x)
    if channels is None or t.shape[0] == channels:
        return t
    if t.shape[0] != 1:
        raise MetricError(f"cannot turn {t.shape[0]} channels into {channels}")
    return t.expand(channels, *t.shape[1:]).contiguous()


def prepare_pair(a: Any, b: Any, options: Preprocessing) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``options`` to a pair ``[C, *spatial]``; returns two float32 tensors ``[C', *spatial']``.

    Spatial shapes may differ only when ``options.resample`` brings both to one size.
    """
    ta, tb = _as_tensor(a), _as_tensor(b)
    if ta.shape[0] != tb.shape[0] or ta.ndim != tb.ndim or (ta.shape != tb.shape and not options.resample):
        raise MetricError(f"pair shapes differ: {tuple(ta.shape)} vs {tuple(tb.shape)}; resample both to one size")
    if options.normalize:  # on the original inputs: numpy stays numpy (see the note above minmax_affine)
        ta, tb = joint_minmax(a, b, options.value_range, per_channel=options.per_channel,
                              constant_value=options.constant_value)
    if options.resample:
        size = working_size(options.resample, ta.ndim - 1)
        ta = resample(ta, size, options.interpolation)
        tb = resample(tb, size, options.interpolation)
    if options.channels:
        ta, tb = repeat_channels(ta, options.channels), repeat_channels(tb, options.channels)
    return ta, tb


def prepare_batch(pairs: Sequence[tuple[Any, Any]], options: Preprocessing) -> torch.Tensor:
    """Prepare several same-shaped pairs into one tensor ``[2n, C', *spatial']``: all first items, then all second.

    Each pair is normalised with its own joint min/max (no coupling between pairs). Written
    straight into one buffer (no stacking copies) when no resampling is needed.
    """
    import torch

    if not pairs:
        raise MetricError("no pairs to prepare")
    if options.resample:
        prepared = [prepare_pair(a, b, options) for a, b in pairs]
        return torch.stack([p[0] for p in prepared] + [p[1] for p in prepared])
    arrs = [(_as_numpy(a), _as_numpy(b)) for a, b in pairs]
    shape = arrs[0][0].shape
    for a, b in arrs:
        if a.shape != shape or b.shape != shape:
            raise MetricError(f"pair shapes differ: {a.shape} vs {b.shape} (first pair {shape})")
    n = len(arrs)
    out = np.empty((2 * n, *shape), np.float32)
    for i, (a, b) in enumerate(arrs):
        if options.normalize:
            lo, hi = _bounds_np((a, b), options.per_channel)
            scale, shift = _minmax_affine_np(lo, hi, options.value_range, options.constant_value)
            _affine_into(out[i], a, scale, shift)
            _affine_into(out[n + i], b, scale, shift)
        else:
            out[i], out[n + i] = a, b
    t = torch.from_numpy(out)
    if options.channels and shape[0] != options.channels:
        if shape[0] != 1:
            raise MetricError(f"cannot turn {shape[0]} channels into {options.channels}")
        t = t.expand(2 * n, options.channels, *shape[1:]).contiguous()
    return t


def prepare_volume(x: Any, options: Preprocessing, bounds: tuple[Any, Any] | None = None) -> torch.Tensor:
    """Prepare one item ``[C, *spatial]`` with given ``(min, max)`` bounds (default: its own).

    A distance matrix or a series passes the bounds of the whole set, so every volume gets the
    same affine map and its features can be computed once.
    """
    if options.normalize:
        lo, hi = _bounds_np((x,), options.per_channel) if bounds is None else bounds
        scale, shift = _minmax_affine_np(lo, hi, options.value_range, options.constant_value)
        t = apply_affine(x, scale, shift)
    else:
        t = _as_tensor(x)
    if options.resample:
        t = resample(t, working_size(options.resample, t.ndim - 1), options.interpolation)
    if options.channels:
        t = repeat_channels(t, options.channels)
    return t

"""Ground-truth distances of a sequence: the normalised parameter offset, optionally VolSiM's non-linear correction.

The correction ("entropy-based similarity model" in VolSiM) fits, per sequence, c in
``f(x) = log(10^c x + 1) / log(10^c + 1)`` to the correlation distances ``1 - |pearson|`` of
frame 0 against the other frames (with frame 0 itself at distance 0, min-max scaled to [0, 1];
data min-max normalised to [-1, 1]);
training targets are then ``f((j - i) / (F - 1))``. Evaluation always uses the linear distances.
"""

from __future__ import annotations

import warnings

import numpy as np


def linear_distances(frames: int) -> np.ndarray:
    """[F, F] matrix of |j - i| / (F - 1)."""
    idx = np.arange(frames, dtype=np.float64)
    return np.abs(idx[:, None] - idx[None, :]) / (frames - 1)


def correction(x: np.ndarray, coefficient: float) -> np.ndarray:
    """f(x) = log(10^c x + 1) / log(10^c + 1); the identity in the limit c -> -inf."""
    scale = 10.0 ** float(coefficient)
    return np.log(scale * np.asarray(x, dtype=np.float64) + 1.0) / np.log(scale + 1.0)


def correlation_distances(frames: np.ndarray) -> np.ndarray:
    """1 - |pearson(frame 0, frame j)| for j = 1..F-1 over a [F, ...] array (min-max normalised jointly)."""
    data = np.asarray(frames, dtype=np.float64).reshape(frames.shape[0], -1)
    lo, hi = data.min(), data.max()
    data = 2.0 * (data - lo) / (hi - lo) - 1.0 if hi > lo else np.zeros_like(data)
    ref = data[0] - data[0].mean()
    out = []
    for row in data[1:]:
        r = row - row.mean()
        denom = np.sqrt((ref * ref).sum() * (r * r).sum())
        out.append(1.0 - abs(float((ref * r).sum() / denom)) if denom > 0 else 1.0)
    return np.asarray(out)


def fit_coefficient(frames: np.ndarray) -> float:
    """Fit VolSiM's non-linearity coefficient c to one sequence (curve_fit, start 0.1); 0 if the fit fails."""
    from scipy.optimize import curve_fit

    # frame 0 itself (distance 0 at x = 0) is part of the curve, so the min-max maps it to 0
    dist = np.concatenate(([0.0], correlation_distances(frames)))
    lo, hi = dist.min(), dist.max()
    if not np.isfinite(dist).all() or hi - lo < 1e-12:
        return 0.0
    y = (dist - lo) / (hi - lo)
    x = np.arange(frames.shape[0], dtype=np.float64) / (frames.shape[0] - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            (c,), _ = curve_fit(correction, x, y, p0=[0.1], maxfev=2000)
        except (RuntimeError, ValueError):
            return 0.0
    # beyond |c| ~ 6 the curve is a step or a line; clip so targets stay well conditioned
    return float(np.clip(c, -6.0, 6.0)) if np.isfinite(c) else 0.0


def target_distances(frames: int, coefficient: float | None = None) -> np.ndarray:
    """[F, F] training targets: linear offsets, passed through the correction when a coefficient is given."""
    lin = linear_distances(frames)
    return lin if coefficient is None else correction(lin, coefficient)

"""Round tick values for the panels' small plots, whose automatic ticks crowd or vanish at small sizes."""

from __future__ import annotations

import numpy as np


def value_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round values (1, 2 or 5 times a power of ten apart) between ``lo`` and ``hi``, about ``count`` of them."""
    span = hi - lo
    if not span > 0 or not np.isfinite(span):
        return [lo]
    raw = span / max(1, count)
    power = 10.0 ** np.floor(np.log10(raw))
    step = next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= 0.7 * raw)
    first = np.ceil(lo / step - 1e-9) * step
    ticks = first + step * np.arange(int(np.floor((hi - first) / step + 1e-9)) + 1)
    return [0.0 if abs(t) < 1e-12 * step else float(t) for t in ticks]


def two_ticks(lo: float, hi: float, inset: float = 0.15) -> list[float]:
    """Two round values between ``lo`` and ``hi``, at least ``inset`` of the range in from either end (a label
    centred on a tick at the very end would be cut off): what a plot only 150 pixels wide has room to label.
    One value when the range is empty."""
    span = hi - lo
    if not span > 0:
        return [lo]
    inner = (lo + inset * span, hi - inset * span)
    for count in (2, 4, 8, 16):
        ticks = [t for t in value_ticks(lo, hi, count) if inner[0] - 1e-12 * span <= t <= inner[1] + 1e-12 * span]
        if len(ticks) >= 2:
            return [ticks[0], ticks[-1]]
    return [0.5 * (lo + hi)]

"""Front-to-back compositing of one wavefront chunk on the CPU in a single pass (numba).

The PyTorch formulation in ``renderer/raymarch.py`` (LUT gather, cumulative product of the
transmittance, a weighted sum) builds five ``[rays, K]``-sized temporaries per chunk; with the field
query made fast (models/multigrid_cpu.py) those passes were about a third of a frame. This kernel
walks every ray's K samples once: LUT lookup (linear between entries, as ``FieldRenderer._lookup``),
``colour += T * alpha * rgb``, ``T *= 1 - alpha``, transmittance below 1e-30 flushed to 0 (the same
denormal guard as ``_flush_tiny``). Sequential products equal the cumulative-product form up to
float32 rounding (tested against it). Without numba (or with ``VOLSIGHT_NO_NUMBA=1``),
:func:`available` is False and the PyTorch formulation runs. Importing this module imports numba
(about half a second): renderer/wavefronts.py imports it on the first translucent march only.
"""

from __future__ import annotations

import numpy as np
import torch

from core.jit import compiler


# a module-level function (not a closure), so numba caches its machine code on disk between runs
def _composite(vals, need, all_needed, lut, lo, scale, colour, through):  # pragma: no cover - compiled
    n_lut = lut.shape[0]
    top = np.float32(n_lut - 1)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    tiny = np.float32(1e-30)
    for a in range(vals.shape[0]):
        t = through[a]
        r = colour[a, 0]
        g = colour[a, 1]
        b = colour[a, 2]
        for k in range(vals.shape[1]):
            if t == zero:
                break
            if not all_needed and not need[a, k]:
                continue
            x = (vals[a, k] - lo) * scale
            x = min(max(x, zero), top)  # NaN compares false: max(NaN, 0) keeps NaN, min keeps it
            if not (x >= zero):
                x = zero
            i = min(np.int64(x), n_lut - 2)
            f = x - np.float32(i)
            al = lut[i, 3] + f * (lut[i + 1, 3] - lut[i, 3])
            w = t * al
            r += w * (lut[i, 0] + f * (lut[i + 1, 0] - lut[i, 0]))
            g += w * (lut[i, 1] + f * (lut[i + 1, 1] - lut[i, 1]))
            b += w * (lut[i, 2] + f * (lut[i + 1, 2] - lut[i, 2]))
            t = t * (one - al)
            if t < tiny:
                t = zero
        colour[a, 0] = r
        colour[a, 1] = g
        colour[a, 2] = b
        through[a] = t


_JIT = compiler()
if _JIT is not None:
    _composite = _JIT(_composite)


def _kernel():
    return _composite if _JIT is not None else None


def available() -> bool:
    """Whether the compiled compositing kernel can be used."""
    return _kernel() is not None


def composite_chunk(vals: torch.Tensor, need: torch.Tensor | None, lut: torch.Tensor, value_range: tuple[float, float],
                    colour: torch.Tensor, through: torch.Tensor) -> None:
    """Composite samples ``vals [A, K]`` (skipping those where ``need`` is False) into ``colour [A, 3]``
    and ``through [A]`` in place; ``lut [n, 4]`` spans ``value_range``. CPU float32 tensors."""
    lo, hi = value_range
    n = lut.shape[0]
    scale = (n - 1) / (hi - lo)
    v = vals.numpy()
    mask = need.numpy() if need is not None else np.ones((1, 1), dtype=np.bool_)
    _kernel()(v, mask, need is None, lut.contiguous().numpy(), np.float32(lo), np.float32(scale), colour.numpy(),
              through.numpy())

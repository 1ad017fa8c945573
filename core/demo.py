"""Built-in demo volumes: seeded, procedural, no downloads.

``smoke_plume`` is a rising, widening, meandering chain of puffs with turbulent modulation;
``turbulence`` is band-limited noise with a Kolmogorov-like -5/3 spectrum. Each has a
meaningful perturbed copy (``demo_pair``): the plume a little later in its rise with its
small scales re-drawn, the turbulence with its high wavenumbers damped (as a lossy
compression would) and its phases slightly jittered.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from core.volume import Volume

DemoKind = Literal["plume", "turbulence"]
DEMO_KINDS: tuple[str, ...] = ("plume", "turbulence")


def _wavenumbers(n: int) -> np.ndarray:
    k = np.fft.fftfreq(n) * n
    kr = np.fft.rfftfreq(n) * n
    return np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kr[None, None, :] ** 2)


def band_limited_noise(
    n: int, seed: int, k_lo: float = 2.0, k_hi: float = 16.0, slope: float = -5.0 / 3.0, damp: float = 0.0,
    phase_jitter: float = 0.0,
) -> np.ndarray:
    """Unit-variance noise with energy spectrum E(k) ~ k^slope on k in [k_lo, k_hi] (cycles per box).

    ``damp`` > 0 multiplies amplitudes by exp(-damp * (k / k_hi)^2); ``phase_jitter`` adds a seeded
    random phase of that many radians (same base field, perturbed).
    """
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((n, n, n))
    spec = np.fft.rfftn(white)
    kk = _wavenumbers(n)
    amp = np.zeros_like(kk)
    band = (kk >= k_lo) & (kk <= k_hi)
    # E(k) ~ k^slope in 3D means |u_k| ~ k^((slope - 2) / 2)
    amp[band] = kk[band] ** ((slope - 2.0) / 2.0)
    if damp:
        amp *= np.exp(-damp * (kk / k_hi) ** 2)
    spec *= amp
    if phase_jitter:
        jr = np.random.default_rng(seed + 7919)
        spec *= np.exp(1j * phase_jitter * jr.standard_normal(spec.shape) * (kk / k_hi))
    out = np.fft.irfftn(spec, s=(n, n, n), axes=(0, 1, 2))
    out -= out.mean()
    out /= out.std() + 1e-12
    return out.astype(np.float32)


def smoke_plume(n: int = 64, seed: int = 0, time: float = 1.0, detail_seed: int | None = None) -> np.ndarray:
    """Density of a rising plume on an n³ grid (z up), values in [0, 1]; ``time`` in (0, 1.5]."""
    rng = np.random.default_rng(seed)
    c = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    phase = rng.uniform(0, 2 * np.pi, size=2)
    field = np.zeros((n, n, n), np.float32)
    puffs = 16
    for t in np.linspace(0.0, 1.0, puffs):
        tt = t * time
        cz = -0.85 + 1.55 * tt
        cx = 0.28 * np.sin(2.4 * np.pi * tt + phase[0]) * tt
        cy = 0.22 * np.cos(1.9 * np.pi * tt + phase[1]) * tt
        sr = 0.08 + 0.24 * tt
        sz = 0.07 + 0.09 * tt
        amp = 1.0 - 0.5 * t
        field += amp * np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (2 * sr**2) + (z - cz) ** 2 / (2 * sz**2)))
    turb = band_limited_noise(n, seed + 1 if detail_seed is None else detail_seed, 3.0, n / 4.0)
    field *= 1.0 + 0.4 * turb
    np.clip(field, 0.0, None, out=field)
    field /= field.max() + 1e-12
    return field


def turbulence(n: int = 64, seed: int = 0, damp: float = 0.0, phase_jitter: float = 0.0) -> np.ndarray:
    """A band-limited turbulence-like scalar field on an n³ grid, values in [0, 1]."""
    f = band_limited_noise(n, seed, 1.5, n / 3.0, damp=damp, phase_jitter=phase_jitter)
    lo, hi = np.percentile(f, [0.1, 99.9])
    return np.clip((f - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def demo_volume(kind: DemoKind = "plume", n: int = 64, seed: int = 0, perturbed: bool = False) -> Volume:
    """One demo volume; ``perturbed`` gives the meaningful perturbed copy."""
    if kind == "plume":
        data = smoke_plume(n, seed, time=1.08, detail_seed=seed + 101) if perturbed else smoke_plume(n, seed)
        desc = "plume, later in its rise with re-drawn small scales" if perturbed else "smoke plume"
    elif kind == "turbulence":
        data = turbulence(n, seed, damp=2.5, phase_jitter=0.35) if perturbed else turbulence(n, seed)
        desc = "turbulence, high wavenumbers damped and phases jittered" if perturbed else "turbulence"
    else:
        from core.errors import VolumeError

        raise VolumeError(f"unknown demo kind {kind!r}; choose one of {DEMO_KINDS}")
    name = f"{kind}{'-perturbed' if perturbed else ''}"
    sp = 2.0 / (n - 1)
    return Volume(data, spacing=(sp, sp, sp), origin=(-1.0, -1.0, -1.0), name=name, source=None,
                  metadata={"demo": kind, "seed": seed, "description": desc})


def demo_pair(kind: DemoKind = "plume", n: int = 64, seed: int = 0) -> tuple[Volume, Volume]:
    """The demo pair (original, perturbed copy) the app opens with on a fresh machine."""
    return demo_volume(kind, n, seed), demo_volume(kind, n, seed, perturbed=True)

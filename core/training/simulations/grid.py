"""Shared numerics of the simulation families: periodic grids, spectra, derivatives, advection.

All families simulate on the periodic box [0, 2*pi)^3 sampled by ``n`` points per axis and run
their 11 frames as one batch (batch axis first), so one call costs about as much as one
simulation of the whole batch. Arrays are torch float32 ``[B, C, n, n, n]`` (axes z, y, x).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch


def wavenumbers(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer wavenumbers (kz, ky, kx) of an ``rfftn`` over the last three axes, broadcastable."""
    k_full = torch.fft.fftfreq(n, d=1.0 / n)
    k_half = torch.fft.rfftfreq(n, d=1.0 / n)
    return k_full.view(n, 1, 1), k_full.view(1, n, 1), k_half.view(1, 1, n // 2 + 1)


def wavenumber_magnitude(n: int) -> torch.Tensor:
    """|k| on the rfft grid, shape [n, n, n//2+1]."""
    kz, ky, kx = wavenumbers(n)
    return torch.sqrt(kz**2 + ky**2 + kx**2)


def central_wavenumbers(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Modified wavenumbers sin(k dx)/dx of the periodic central difference (dx = 2*pi/n).

    Projecting with these makes the central-difference divergence vanish to rounding error,
    which is the divergence a user (or a test) measures on the grid.
    """
    dx = 2.0 * math.pi / n
    return tuple(torch.sin(k * dx) / dx for k in wavenumbers(n))  # type: ignore[return-value]


def rfft3(x: torch.Tensor) -> torch.Tensor:
    return torch.fft.rfftn(x, dim=(-3, -2, -1))


def irfft3(x: torch.Tensor, n: int) -> torch.Tensor:
    return torch.fft.irfftn(x, s=(n, n, n), dim=(-3, -2, -1))


def random_field(rng: np.random.Generator, n: int, *, slope: float, k_low: float = 1.0, k_high: float | None = None,
                 channels: int = 1, white: torch.Tensor | None = None) -> torch.Tensor:
    """Gaussian random field with power spectrum ~ |k|^-slope inside [k_low, k_high], unit std per channel.

    ``white`` (the complex white noise, [channels, n, n, n//2+1]) may be given so that several
    spectra share the same random phases; returns [channels, n, n, n].
    """
    if white is None:
        white = white_noise(rng, n, channels)
    amp = band_amplitude(n, slope=slope, k_low=k_low, k_high=k_high)
    field = irfft3(white * amp, n)
    return _unit_std(field)


def white_noise(rng: np.random.Generator, n: int, channels: int = 1) -> torch.Tensor:
    """Spectrum of real white noise, [channels, n, n, n//2+1] complex64."""
    real = torch.from_numpy(rng.standard_normal((channels, n, n, n)).astype(np.float32))
    return rfft3(real)


def band_amplitude(n: int, *, slope: float, k_low: float = 1.0, k_high: float | None = None) -> torch.Tensor:
    """Amplitude |k|^(-slope/2) with smooth (Gaussian-flank) cut-offs at k_low and k_high."""
    k = wavenumber_magnitude(n)
    k_high = n / 3.0 if k_high is None else k_high
    amp = torch.where(k > 0, k.clamp(min=1e-6) ** (-slope / 2.0), torch.zeros_like(k))
    low = torch.where(k < k_low, torch.exp(-((k - k_low) ** 2) / 0.5), torch.ones_like(k))
    high = torch.where(k > k_high, torch.exp(-((k - k_high) ** 2) / (0.08 * k_high**2 + 0.5)), torch.ones_like(k))
    return amp * low * high


def _unit_std(field: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(-3, 0))
    field = field - field.mean(dim=dims, keepdim=True)
    return field / field.std(dim=dims, keepdim=True).clamp(min=1e-12)


def project_divergence_free(velocity: torch.Tensor) -> torch.Tensor:
    """Remove the gradient part of a periodic velocity [..., 3, n, n, n] (components z, y, x).

    Solves the pressure Poisson equation in Fourier space with the central-difference operator,
    so the grid divergence of the result is zero to rounding error; the mean flow is kept.
    """
    n = velocity.shape[-1]
    kz, ky, kx = central_wavenumbers(n)
    u = rfft3(velocity)
    uz, uy, ux = u.unbind(dim=-4)
    k2 = kz**2 + ky**2 + kx**2
    div = kz * uz + ky * uy + kx * ux
    phi = torch.where(k2 > 1e-12, div / k2.clamp(min=1e-12), torch.zeros_like(div))
    out = torch.stack((uz - kz * phi, uy - ky * phi, ux - kx * phi), dim=-4)
    return irfft3(out, n)


def central_divergence(velocity: torch.Tensor) -> torch.Tensor:
    """Periodic central-difference divergence of [..., 3, n, n, n] velocity (components z, y, x)."""
    n = velocity.shape[-1]
    dx = 2.0 * math.pi / n
    out = torch.zeros_like(velocity[..., 0, :, :, :])
    for comp, dim in zip(range(3), (-3, -2, -1)):
        v = velocity[..., comp, :, :, :]
        out = out + (torch.roll(v, -1, dims=dim) - torch.roll(v, 1, dims=dim)) / (2.0 * dx)
    return out


def advect_periodic(fields: torch.Tensor, velocity: torch.Tensor, dt: float | torch.Tensor) -> torch.Tensor:
    """Semi-Lagrangian advection of fields [B, C, n, n, n] by velocity [B, 3, n, n, n] (z, y, x) on the torus.

    Back-traces each voxel centre by ``dt * velocity`` (velocity in box units of 2*pi; ``dt`` a
    number or one per batch element) and interpolates trilinearly, wrapping around the box.
    """
    b, c, n = fields.shape[0], fields.shape[1], fields.shape[-1]
    step = torch.as_tensor(dt, dtype=fields.dtype).reshape(-1, 1, 1, 1) * (n / (2.0 * math.pi))  # voxels per unit
    idx = torch.arange(n, dtype=fields.dtype)
    gz, gy, gx = torch.meshgrid(idx, idx, idx, indexing="ij")
    pz = torch.remainder(gz - step * velocity[:, 0], n)
    py = torch.remainder(gy - step * velocity[:, 1], n)
    px = torch.remainder(gx - step * velocity[:, 2], n)
    # pad one wrapped voxel at the high end so trilinear weights never leave the array
    padded = torch.cat((fields, fields[..., :1, :, :]), dim=-3)
    padded = torch.cat((padded, padded[..., :, :1, :]), dim=-2)
    padded = torch.cat((padded, padded[..., :, :, :1]), dim=-1)
    grid = torch.stack((px, py, pz), dim=-1) * (2.0 / n) - 1.0  # align_corners over n+1 samples
    out = torch.nn.functional.grid_sample(padded, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(b, c, n, n, n)


def coordinates(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Voxel-centre coordinates (z, y, x) in [0, 2*pi), each [n, n, n]."""
    x = torch.arange(n, dtype=torch.float32) * (2.0 * math.pi / n)
    return torch.meshgrid(x, x, x, indexing="ij")


def periodic_blobs(rng: np.random.Generator, n: int, count: int, width: tuple[float, float],
                   amplitude: Callable[[], float]) -> torch.Tensor:
    """A sum of ``count`` Gaussian blobs on the periodic box, [n, n, n].

    Each blob draws its centre, then its width (uniform in ``width``), then ``amplitude()`` from
    ``rng``, in that order. The distance is periodic (``2 (1 - cos Δ)`` per axis), so blobs wrap
    smoothly across the box faces.
    """
    z, y, x = coordinates(n)
    total = torch.zeros(n, n, n)
    for _ in range(count):
        c = rng.uniform(0.0, 2.0 * math.pi, 3)
        w = rng.uniform(*width)
        d2 = sum((1.0 - torch.cos(g - float(ci))) * 2.0 for g, ci in zip((z, y, x), c, strict=True))
        total = total + float(amplitude()) * torch.exp(-d2 / (2.0 * w**2))
    return total


def downsample(frames: np.ndarray, size: int) -> np.ndarray:
    """Box-average [F, C, n, n, n] frames down to ``size`` per axis (n must be a multiple of size)."""
    n = frames.shape[-1]
    if n == size:
        return frames
    if n % size:
        raise ValueError(f"cannot box-average {n} voxels to {size}; use a divisor of {n}")
    f = n // size
    t = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
    lead = t.shape[:-3]
    out = torch.nn.functional.avg_pool3d(t.reshape(-1, 1, n, n, n), f).reshape(*lead, size, size, size)
    return out.numpy()


def frame_perturbations(rng: np.random.Generator, n: int, frames: int, channels: int = 1, *,
                        slope: float = 2.0, k_high: float = 10.0) -> torch.Tensor:
    """Independent smooth random fields for every frame, [frames, channels, n, n, n], unit std each.

    Frame 0 gets one too: every frame (reference included) is one noisy realisation, as in the
    noise-injected simulations of LSiM/VolSiM, so distances are not a clean function of the
    parameter and a metric must look past the nuisance variation.
    """
    return torch.stack([random_field(rng, n, slope=slope, k_high=k_high, channels=channels) for _ in range(frames)])

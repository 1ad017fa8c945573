"""Advection-diffusion of a density by a steady divergence-free flow (pseudo-spectral, mass conserving)."""

from __future__ import annotations

import math

import numpy as np
import torch

from core.training.simulations.grid import (
    frame_perturbations,
    irfft3,
    periodic_blobs,
    project_divergence_free,
    random_field,
    rfft3,
    wavenumber_magnitude,
    wavenumbers,
)

PARAMETERS = ("diffusivity", "speed")


def random_density(rng: np.random.Generator, n: int) -> torch.Tensor:
    """A positive density: a few periodic Gaussian blobs on a faint smooth random background, [1, n, n, n]."""
    rho = periodic_blobs(rng, n, int(rng.integers(2, 7)), (0.25, 0.8), lambda: rng.uniform(0.5, 1.5))
    background = random_field(rng, n, slope=float(rng.uniform(3.0, 5.0)), k_high=8.0)[0]
    rho = rho + float(rng.uniform(0.05, 0.3)) * (background - background.min())
    return rho[None]


def random_flow(rng: np.random.Generator, n: int) -> torch.Tensor:
    """Smooth divergence-free velocity [3, n, n, n] with unit RMS speed."""
    u = random_field(rng, n, slope=float(rng.uniform(3.0, 6.0)), k_high=float(rng.uniform(3.0, 6.0)), channels=3)
    u = project_divergence_free(u)
    return u / u.pow(2).sum(dim=0).mean().sqrt().clamp(min=1e-12)


def advect_diffuse(rho: torch.Tensor, velocity: torch.Tensor, diffusivity: torch.Tensor, duration: float,
                   max_courant: float = 0.8) -> torch.Tensor:
    """Integrate d(rho)/dt = -div(u rho) + nu lap(rho) for a batch: rho [B,1,n,n,n], velocity [B,3,n,n,n], nu [B].

    Flux divergence by spectral derivatives (its k=0 mode is exactly zero: total mass is kept),
    diffusion by an integrating factor, advection by SSP-RK3, 2/3-rule dealiasing.
    """
    n = rho.shape[-1]
    kz, ky, kx = wavenumbers(n)
    kmag = wavenumber_magnitude(n)
    dealias = (kmag < n / 3.0).to(torch.float32)
    dx = 2.0 * math.pi / n
    umax = float(velocity.abs().amax())
    steps = max(1, math.ceil(duration * umax / (max_courant * dx)))
    dt = duration / steps
    decay = torch.exp(-diffusivity.view(-1, 1, 1, 1, 1) * kmag**2 * dt)
    half_decay = torch.exp(-diffusivity.view(-1, 1, 1, 1, 1) * kmag**2 * dt / 2)

    def rhs(r_hat: torch.Tensor) -> torch.Tensor:
        r = irfft3(r_hat, n)
        flux = rfft3(velocity * r)
        div = 1j * (kz * flux[:, 0:1] + ky * flux[:, 1:2] + kx * flux[:, 2:3])
        return -div * dealias

    r_hat = rfft3(rho)
    for _ in range(steps):
        # SSP-RK3 in the integrating-factor frame (stage times 0, dt, dt/2)
        k1 = rhs(r_hat)
        r1 = (r_hat + dt * k1) * decay
        k2 = rhs(r1)
        r2 = 0.75 * r_hat * half_decay + 0.25 * (r1 + dt * k2) / half_decay
        k3 = rhs(r2)
        r_hat = (r_hat * decay) / 3.0 + (2.0 / 3.0) * (r2 + dt * k3) * half_decay
    return irfft3(r_hat, n)


def simulate(rng: np.random.Generator, n: int, frames: int,
             parameter: str | None = None) -> tuple[np.ndarray, str, np.ndarray]:
    """One advection-diffusion sequence; the diffusivity or the flow speed grows with the frame index."""
    parameter = parameter or str(rng.choice(PARAMETERS))
    rho0 = random_density(rng, n)
    flow = random_flow(rng, n)
    duration = float(rng.uniform(0.6, 1.2))
    steps = np.arange(frames, dtype=np.float64)
    if parameter == "diffusivity":
        speed = np.full(frames, rng.uniform(0.25, 0.6))
        values = rng.uniform(0.0, 0.005) + steps * rng.uniform(0.001, 0.005)
        nu = values
    elif parameter == "speed":
        values = rng.uniform(0.0, 0.1) + steps * rng.uniform(0.03, 0.07)
        speed = values
        nu = np.full(frames, rng.uniform(0.0005, 0.005))
    else:
        raise ValueError(f"advection-diffusion varies one of {PARAMETERS}, not {parameter!r}")
    # per-frame nuisance: each frame starts from its own slightly perturbed density and flow
    strength = float(rng.uniform(0.0, 0.25))
    rho = rho0[None] + strength * float(rho0.std()) * frame_perturbations(rng, n, frames)
    wobble = project_divergence_free(frame_perturbations(rng, n, frames, 3, slope=4.0, k_high=6.0))
    flow = flow[None] + strength * wobble
    velocity = flow * torch.tensor(speed, dtype=torch.float32).view(-1, 1, 1, 1, 1)
    out = advect_diffuse(rho, velocity, torch.tensor(nu, dtype=torch.float32), duration)
    return out.numpy(), parameter, values

"""Viscous Burgers' equation for a 3-channel velocity: semi-Lagrangian self-advection + implicit diffusion."""

from __future__ import annotations

import math

import numpy as np
import torch

from core.training.simulations.grid import (
    advect_periodic,
    frame_perturbations,
    irfft3,
    random_field,
    rfft3,
    wavenumber_magnitude,
)

PARAMETERS = ("viscosity", "amplitude", "duration")


def burgers(velocity: torch.Tensor, viscosity: torch.Tensor, duration: torch.Tensor, steps: int) -> torch.Tensor:
    """Integrate du/dt + (u.grad)u = nu lap(u) for a batch [B,3,n,n,n]; nu and duration are [B]."""
    n = velocity.shape[-1]
    k2 = wavenumber_magnitude(n) ** 2
    dt = (duration / steps).view(-1, 1, 1, 1, 1)
    # exact decay of each Fourier mode over one step: unconditionally stable diffusion
    decay = torch.exp(-viscosity.view(-1, 1, 1, 1, 1) * k2 * dt)
    u = velocity
    for _ in range(steps):
        u = advect_periodic(u, u, dt)
        u = irfft3(rfft3(u) * decay, n)
    return u



def simulate(rng: np.random.Generator, n: int, frames: int,
             parameter: str | None = None) -> tuple[np.ndarray, str, np.ndarray]:
    """One Burgers sequence; viscosity, initial amplitude or simulated time grows with the frame index."""
    parameter = parameter or str(rng.choice(PARAMETERS))
    u0 = random_field(rng, n, slope=float(rng.uniform(2.5, 5.0)), k_high=float(rng.uniform(4.0, 8.0)), channels=3)
    u0 = u0 * float(rng.uniform(0.6, 1.2))
    steps = np.arange(frames, dtype=np.float64)
    nu = np.full(frames, rng.uniform(0.002, 0.01))
    amp = np.ones(frames)
    duration = np.full(frames, rng.uniform(0.5, 1.0))
    if parameter == "viscosity":
        values = rng.uniform(0.0, 0.004) + steps * rng.uniform(0.002, 0.006)
        nu = values
    elif parameter == "amplitude":
        values = rng.uniform(0.3, 0.6) + steps * rng.uniform(0.05, 0.12)
        amp = values
    elif parameter == "duration":
        values = rng.uniform(0.05, 0.2) + steps * rng.uniform(0.06, 0.12)
        duration = values
    else:
        raise ValueError(f"Burgers varies one of {PARAMETERS}, not {parameter!r}")
    strength = float(rng.uniform(0.0, 0.25))  # per-frame perturbation of the initial velocity
    u0 = u0[None] + strength * float(u0.std()) * frame_perturbations(rng, n, frames, 3, slope=3.0, k_high=8.0)
    u = u0 * torch.tensor(amp, dtype=torch.float32).view(-1, 1, 1, 1, 1)
    n_steps = max(4, math.ceil(float(duration.max()) / 0.1))
    out = burgers(u, torch.tensor(nu, dtype=torch.float32), torch.tensor(duration, dtype=torch.float32), n_steps)
    return out.numpy(), parameter, values

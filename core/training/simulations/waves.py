"""The damped wave equation u_tt + g u_t = c^2 lap(u), solved exactly mode by mode in Fourier space."""

from __future__ import annotations

import numpy as np
import torch

from core.training.simulations.grid import (
    frame_perturbations,
    irfft3,
    periodic_blobs,
    random_field,
    rfft3,
    wavenumber_magnitude,
)

PARAMETERS = ("time", "damping")


def damped_wave(u0: torch.Tensor, speed: float, damping: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
    """u(t) from u(0)=u0 [1 or B,1,n,n,n], u_t(0)=0 for a batch of damping/time values [B]; returns [B,1,n,n,n].

    Requires speed > damping/2 so that every non-constant mode is under-damped.
    """
    n = u0.shape[-1]
    k = wavenumber_magnitude(n)
    g = damping.view(-1, 1, 1, 1, 1)
    t = time.view(-1, 1, 1, 1, 1)
    omega = torch.sqrt((speed * k) ** 2 - g**2 / 4.0).clamp(min=1e-6)
    envelope = torch.exp(-g * t / 2.0)
    factor = envelope * (torch.cos(omega * t) + g / (2.0 * omega) * torch.sin(omega * t))
    factor = torch.where(k == 0, torch.ones_like(factor), factor)
    return irfft3(rfft3(u0) * factor, n)


def simulate(rng: np.random.Generator, n: int, frames: int,
             parameter: str | None = None) -> tuple[np.ndarray, str, np.ndarray]:
    """One wave sequence; elapsed time or damping grows with the frame index."""
    parameter = parameter or str(rng.choice(PARAMETERS))
    u0 = periodic_blobs(rng, n, int(rng.integers(1, 5)), (0.15, 0.45),
                        lambda: rng.choice((-1.0, 1.0)) * rng.uniform(0.5, 1.0))
    u0 = u0 + float(rng.uniform(0.0, 0.2)) * random_field(rng, n, slope=3.0, k_high=10.0)[0]
    speed = float(rng.uniform(0.8, 1.4))
    steps = np.arange(frames, dtype=np.float64)
    time = np.full(frames, rng.uniform(0.3, 1.0))
    damping = np.full(frames, rng.uniform(0.0, 0.3))
    if parameter == "time":
        values = rng.uniform(0.0, 0.3) + steps * rng.uniform(0.06, 0.15)
        time = values
    elif parameter == "damping":
        # keep every mode under-damped: damping < 2 * speed * |k|min (|k|min = 1)
        start = rng.uniform(0.0, 0.2)
        values = start + steps * rng.uniform(0.06, (1.9 * speed - start) / (frames - 1))
        damping = values
    else:
        raise ValueError(f"waves vary one of {PARAMETERS}, not {parameter!r}")
    strength = float(rng.uniform(0.0, 0.25))  # per-frame perturbation of the initial displacement
    u0 = u0[None] + strength * float(u0.std()) * frame_perturbations(rng, n, frames)
    out = damped_wave(u0, speed, torch.tensor(damping, dtype=torch.float32),
                      torch.tensor(time, dtype=torch.float32))
    return out.numpy(), parameter, values

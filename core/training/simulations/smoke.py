"""A buoyant smoke plume, stable-fluids style: semi-Lagrangian advection, buoyancy, pressure projection.

Periodic box, y (axis H, velocity component 1) is up. The pressure Poisson equation is solved
exactly in Fourier space (with the central-difference operator, so the grid divergence after
each projection is zero to rounding). Buoyancy acts on the density minus its mean (a Boussinesq
background), which keeps the mean momentum of the periodic box at zero.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from core.training.simulations.grid import (
    advect_periodic,
    coordinates,
    frame_perturbations,
    project_divergence_free,
    random_field,
)

PARAMETERS = ("buoyancy", "source_x", "inflow")


def smoke(velocity: torch.Tensor, density: torch.Tensor, source: torch.Tensor, buoyancy: torch.Tensor,
          inflow: torch.Tensor, steps: int, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a batch of plumes: velocity [B,3,m,m,m], density/source [B,1,n,n,n] (n a multiple of m), buoyancy/inflow [B].

    The velocity may live on a coarser grid than the density (a common smoke-solver economy):
    buoyancy is box-averaged onto it and it is upsampled to move the density.
    """
    b = buoyancy.view(-1, 1, 1, 1)
    rate = inflow.view(-1, 1, 1, 1, 1)
    factor = density.shape[-1] // velocity.shape[-1]
    for _ in range(steps):
        density = density + dt * rate * source
        fine_velocity = velocity if factor == 1 else torch.nn.functional.interpolate(
            velocity, scale_factor=factor, mode="trilinear", align_corners=False)
        density = advect_periodic(density, fine_velocity, dt).clamp(min=0.0)
        velocity = advect_periodic(velocity, velocity, dt)
        coarse = density if factor == 1 else torch.nn.functional.avg_pool3d(density, factor)
        lift = coarse[:, 0] - coarse[:, 0].mean(dim=(-3, -2, -1), keepdim=True)
        velocity = torch.stack((velocity[:, 0], velocity[:, 1] + dt * b * lift, velocity[:, 2]), dim=1)
        velocity = project_divergence_free(velocity)
    return velocity, density


def simulate(rng: np.random.Generator, n: int, frames: int,
             parameter: str | None = None) -> tuple[np.ndarray, str, np.ndarray]:
    """One plume sequence; buoyancy, source position or inflow rate grows with the frame index."""
    parameter = parameter or str(rng.choice(PARAMETERS))
    z, y, x = coordinates(n)
    steps_idx = np.arange(frames, dtype=np.float64)
    radius = float(rng.uniform(0.35, 0.7))
    sz, sx = rng.uniform(0.35, 0.65, 2) * 2.0 * math.pi
    sy = float(rng.uniform(0.1, 0.2)) * 2.0 * math.pi
    src_x = np.full(frames, sx)
    buoy = np.full(frames, rng.uniform(1.0, 3.0))
    inflow = np.full(frames, rng.uniform(0.8, 1.5))
    if parameter == "buoyancy":
        values = rng.uniform(0.3, 1.0) + steps_idx * rng.uniform(0.1, 0.3)
        buoy = values
    elif parameter == "source_x":
        values = sx + steps_idx * rng.uniform(0.05, 0.12) * rng.choice((-1.0, 1.0))
        src_x = values
    elif parameter == "inflow":
        values = rng.uniform(0.2, 0.6) + steps_idx * rng.uniform(0.08, 0.2)
        inflow = values
    else:
        raise ValueError(f"smoke varies one of {PARAMETERS}, not {parameter!r}")
    sources = []
    for cx in src_x:
        d2 = (z - float(sz)) ** 2 + (y - sy) ** 2 + (x - float(cx)) ** 2
        sources.append(torch.exp(-d2 / (2.0 * radius**2)))
    source = torch.stack(sources)[:, None]
    # random initial state shared by every frame: a weak divergence-free swirl and a few puffs
    m = max(n // 2, 8)  # velocity on a half-resolution grid: the flow is smooth, the density carries the detail
    swirl = project_divergence_free(random_field(rng, m, slope=4.0, k_high=6.0, channels=3))
    v0 = swirl * float(rng.uniform(0.05, 0.3))
    d0 = 0.3 * (random_field(rng, n, slope=4.0, k_high=6.0)[0] > 1.2).to(torch.float32)
    # per-frame perturbation of the initial swirl: plumes diverge a little even at equal parameters
    strength = float(rng.uniform(0.0, 0.5))  # in velocity units (buoyant flow reaches ~1-4)
    velocity = v0[None] + strength * project_divergence_free(frame_perturbations(rng, m, frames, 3, slope=3.0,
                                                                                 k_high=6.0))
    density = d0[None, None].expand(frames, -1, -1, -1, -1).contiguous()
    duration = float(rng.uniform(1.5, 2.5))
    steps = 12  # semi-Lagrangian steps are stable at any Courant number
    _, density = smoke(velocity, density, source, torch.tensor(buoy, dtype=torch.float32),
                       torch.tensor(inflow, dtype=torch.float32), steps, duration / steps)
    return density.numpy(), parameter, values

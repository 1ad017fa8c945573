"""A liquid body (a pool and falling drops) carried by a flow: a sharp interface, as VolSiM's liquid data.

The liquid is a level set (negative inside): the union of a layer with a rippled surface and a
few spherical drops. It is advected semi-Lagrangian by a smooth divergence-free flow plus a
uniform downward drift (gravity's net effect on the drops), and rendered as a soft indicator
(liquid 1, air 0) with an interface a few voxels wide. Which parameter grows with the frame
index: the elapsed ``time``, the flow ``speed`` or the ``drift``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from core.training.simulations.advection import random_flow
from core.training.simulations.grid import (
    advect_periodic,
    coordinates,
    frame_perturbations,
    project_divergence_free,
    random_field,
)

# parameter: (its value when another one varies, the first frame's value, the step per frame), ranges to draw from
SCHEDULES = {
    "time": ((0.6, 1.2), (0.0, 0.2), (0.06, 0.15)),
    "speed": ((0.2, 0.6), (0.0, 0.1), (0.04, 0.08)),
    "drift": ((0.0, 0.3), (0.0, 0.1), (0.04, 0.1)),
}
PARAMETERS = tuple(SCHEDULES)


def level_set(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, float]:
    """Signed distance (approximately, in box units of 2*pi) of a rippled layer and 1-4 drops, [n, n, n],
    and the height of the layer's highest point."""
    z, y, x = coordinates(n)
    depth = float(rng.uniform(1.0, 2.2))  # the layer fills the box from the floor to its rippled surface
    heights = random_field(rng, n, slope=4.0, k_high=4.0)[0].mean(dim=0, keepdim=True)  # [1, n, n]: over (y, x)
    ripple = float(rng.uniform(0.05, 0.3)) * heights / heights.std().clamp(min=1e-12)
    surface = depth + ripple  # a height that varies over (y, x) only
    phi = z - surface
    for _ in range(int(rng.integers(1, 5))):
        c = rng.uniform(0.0, 2.0 * math.pi, 3)
        c[0] = rng.uniform(float(surface.max()) + 0.5, 2.0 * math.pi - 1.0)  # above the layer
        r = float(rng.uniform(0.25, 0.7))
        drop = torch.sqrt((z - float(c[0])) ** 2 + (y - float(c[1])) ** 2 + (x - float(c[2])) ** 2) - r
        phi = torch.minimum(phi, drop)
    return phi, float(surface.max())


def simulate(rng: np.random.Generator, n: int, frames: int,
             parameter: str | None = None) -> tuple[np.ndarray, str, np.ndarray]:
    """One liquid sequence; the elapsed time, the flow speed or the downward drift grows with the frame index."""
    parameter = parameter or str(rng.choice(PARAMETERS))
    if parameter not in PARAMETERS:
        raise ValueError(f"liquid varies one of {PARAMETERS}, not {parameter!r}")
    phi0, top = level_set(rng, n)
    flow = random_flow(rng, n)
    setting = {name: np.full(frames, rng.uniform(*fixed)) for name, (fixed, _, _) in SCHEDULES.items()}
    first, step = SCHEDULES[parameter][1:]
    values = rng.uniform(*first) + np.arange(frames, dtype=np.float64) * rng.uniform(*step)
    setting[parameter] = values
    time, speed, drift = setting["time"], setting["speed"], setting["drift"]
    softness = float(rng.uniform(0.05, 0.15))  # interface half-width in box units
    # per-frame nuisance: each frame starts from a slightly perturbed interface and flow
    strength = float(rng.uniform(0.0, 0.25))
    phi = phi0[None, None] + 0.1 * strength * frame_perturbations(rng, n, frames, slope=3.0, k_high=8.0)
    wobble = project_divergence_free(frame_perturbations(rng, n, frames, 3, slope=4.0, k_high=6.0))
    velocity = (flow[None] + strength * wobble) * torch.tensor(speed, dtype=torch.float32).view(-1, 1, 1, 1, 1)
    # the drift pulls the drops down (z is up) and fades out just above the layer, where they land;
    # all motion fades out at the floor and the ceiling, so nothing wraps through them
    z = coordinates(n)[0]
    fall = torch.sigmoid((z - top - 0.3) / 0.15)
    velocity[:, 0] -= torch.tensor(drift, dtype=torch.float32).view(-1, 1, 1, 1) * fall
    # (a sub-step moves at most 1.5 voxels, and nothing moves within 2 voxels of either, so no
    # back-trace crosses the periodic seam between them)
    dx = 2.0 * math.pi / n
    wall = torch.minimum(z, 2.0 * math.pi - dx - z)
    velocity = velocity * ((wall - 2.0 * dx) / (4.0 * dx)).clamp(0.0, 1.0)
    # semi-Lagrangian sub-steps of at most ~1.5 voxels each; every frame takes the same number
    umax = float(velocity.abs().amax())
    substeps = max(1, math.ceil(float(time.max()) * umax / (1.5 * 2.0 * math.pi / n)))
    dt = torch.tensor(time / substeps, dtype=torch.float32)
    for _ in range(substeps):
        phi = advect_periodic(phi, velocity, dt)
    solid = 0.5 * (1.0 - torch.tanh(phi / softness))
    return solid.numpy(), parameter, values

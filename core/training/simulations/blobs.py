"""Soft solids bounded by a level set of band-limited noise: random blobs with sharp interfaces.

The solid is where a smooth Gaussian random field exceeds an iso level, rendered as a soft
indicator (1 inside, 0 outside) whose interface is a few voxels wide. The field is scaled by its
RMS gradient, so it reads as a distance in box units and the interface width does not depend on
the grid size or the spectrum. One of four parameters grows with the frame index: the iso
``level`` (the blobs grow or shrink), a rigid ``shift`` of the whole field, the time the field is
carried by a smooth divergence-free ``flow``, or a ``morph`` angle that rotates the field towards
an independent one (which keeps its statistics). The content is generic: no particular shapes
and no fluid, so it adds interfaces to the training data without imitating any tested family.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from core.training.simulations.advection import random_flow
from core.training.simulations.grid import (
    advect_periodic,
    frame_perturbations,
    irfft3,
    random_field,
    rfft3,
    wavenumbers,
    white_noise,
)

# the step of each parameter per frame (box units, field units or radians), drawn per sequence
STEPS = {"level": (0.04, 0.1), "shift": (0.04, 0.1), "flow": (0.05, 0.12), "morph": (0.03, 0.08)}
PARAMETERS = tuple(STEPS)


def gradient_rms(field: torch.Tensor) -> float:
    """RMS magnitude of the spectral gradient of a periodic field [..., n, n, n] (box length 2*pi)."""
    n = field.shape[-1]
    spec = rfft3(field)
    sq = sum(irfft3(1j * k * spec, n).pow(2) for k in wavenumbers(n))
    return float(sq.mean().sqrt())


def shifted(field: torch.Tensor, offset: np.ndarray) -> torch.Tensor:
    """The periodic field translated by ``offset`` (z, y, x, box units) exactly, by a Fourier phase ramp."""
    n = field.shape[-1]
    phase = sum(k * float(o) for k, o in zip(wavenumbers(n), offset))
    return irfft3(rfft3(field) * torch.exp(-1j * phase), n)


def simulate(rng: np.random.Generator, n: int, frames: int,
             parameter: str | None = None) -> tuple[np.ndarray, str, np.ndarray]:
    """One blob sequence; the iso level, a shift, the flow time or the morph angle grows with the frame index."""
    parameter = parameter or str(rng.choice(PARAMETERS))
    if parameter not in PARAMETERS:
        raise ValueError(f"blobs vary one of {PARAMETERS}, not {parameter!r}")
    slope = float(rng.uniform(2.0, 5.0))
    k_high = float(rng.uniform(3.0, 8.0))  # physical wavenumbers: blobs of the same size at any grid size
    white = white_noise(rng, n)
    base = random_field(rng, n, slope=slope, k_high=k_high, white=white)[0]
    scale = gradient_rms(base)
    level0 = float(rng.uniform(-0.6, 0.6))
    softness = float(rng.uniform(0.05, 0.25))  # interface half-width in box units
    values = np.arange(frames, dtype=np.float64) * rng.uniform(*STEPS[parameter])
    fields = base.expand(frames, n, n, n)  # a view: every branch below builds new tensors
    levels = np.full(frames, level0)
    if parameter == "level":
        levels = level0 + values * rng.choice((-1.0, 1.0))
    elif parameter == "shift":
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        fields = torch.stack([shifted(base, t * direction) for t in values])
    elif parameter == "flow":
        velocity = random_flow(rng, n)[None].expand(frames, 3, n, n, n)
        dx = 2.0 * math.pi / n
        substeps = max(1, math.ceil(float(values.max()) / (1.5 * dx)))  # unit RMS speed: about 1.5 voxels a step
        dt = torch.tensor(values / substeps, dtype=torch.float32)
        phi = fields[:, None]
        for _ in range(substeps):
            phi = advect_periodic(phi, velocity, dt)
        fields = phi[:, 0]
    else:  # morph: rotate towards an independent field with the same spectrum (unit std throughout)
        other = random_field(rng, n, slope=slope, k_high=k_high)[0]
        fields = torch.stack([math.cos(t) * base + math.sin(t) * other for t in values])
    # scaled by the reference's gradient, (field - level) reads as a signed distance in box units
    dist = (fields - torch.tensor(levels, dtype=torch.float32).view(-1, 1, 1, 1)) / scale
    solid = 0.5 * (1.0 + torch.tanh(dist / softness))
    texture = float(rng.uniform(0.0, 0.15)) * random_field(rng, n, slope=2.0, k_high=8.0)[0]
    strength = float(rng.uniform(0.0, 0.12))  # per-frame noise on top of the shared texture
    jitter = strength * frame_perturbations(rng, n, frames, slope=1.0, k_high=10.0)[:, 0]
    return (solid + texture + jitter)[:, None].numpy(), parameter, values

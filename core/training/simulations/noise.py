"""Band-limited Gaussian noise whose spectrum (slope or band) changes with the frame index, same phases."""

from __future__ import annotations

import numpy as np
import torch

from core.training.simulations.grid import random_field, white_noise

PARAMETERS = ("slope", "band")


def simulate(rng: np.random.Generator, n: int, frames: int,
             parameter: str | None = None) -> tuple[np.ndarray, str, np.ndarray]:
    """One noise sequence; the spectral slope or the pass band moves with the frame index."""
    parameter = parameter or str(rng.choice(PARAMETERS))
    channels = 3 if rng.random() < 0.3 else 1
    white = white_noise(rng, n, channels)
    steps = np.arange(frames, dtype=np.float64)
    slope0 = float(rng.uniform(1.0, 4.0))
    k_low = float(rng.uniform(1.0, 3.0))
    k_high = float(rng.uniform(4.0, 10.0))  # physical wavenumbers: same content at any grid size
    strength = float(rng.uniform(0.0, 0.5))  # each frame mixes in its own white noise
    whites = [np.sqrt(1 - strength**2) * white + strength * white_noise(rng, n, channels) for _ in range(frames)]
    out = []
    if parameter == "slope":
        values = slope0 + steps * rng.uniform(0.1, 0.3) * rng.choice((-1.0, 1.0))
        for s, w in zip(values, whites):
            out.append(random_field(rng, n, slope=float(s), k_low=k_low, k_high=k_high, white=w))
    elif parameter == "band":
        sign = rng.choice((-1.0, 1.0))
        values = k_high * (1.0 + sign * steps * rng.uniform(0.02, 0.05))
        for kh, w in zip(values, whites):
            out.append(random_field(rng, n, slope=slope0, k_low=k_low, k_high=float(kh), white=w))
    else:
        raise ValueError(f"noise varies one of {PARAMETERS}, not {parameter!r}")
    return torch.stack(out).numpy(), parameter, values

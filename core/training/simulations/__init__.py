"""Procedural 3D simulation families for training and evaluating learned volume metrics.

Each family produces a *sequence*: ``frames`` volumes (11 by default, as VolSiM's data) from
one random initial condition, in which one simulation parameter grows in equal steps; frame 0
is the reference. The ground-truth distance of frames i and j is the normalised parameter offset
``|j - i| / (frames - 1)`` (see :mod:`core.training.simulations.ground_truth`). Generation is
vectorised: all frames of a sequence run as one torch batch. Seeded: the same (family, seed,
size) gives the same arrays.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from core.training.simulations import advection, blobs, burgers, liquid, noise, shapes, smoke, waves

Simulator = Callable[[np.random.Generator, int, int, "str | None"], tuple[np.ndarray, str, np.ndarray]]

# family name -> (simulate function, channels, the parameters it may vary)
FAMILIES: dict[str, tuple[Simulator, int | None, tuple[str, ...]]] = {
    "advdiff": (advection.simulate, 1, advection.PARAMETERS),
    "burgers": (burgers.simulate, 3, burgers.PARAMETERS),
    "smoke": (smoke.simulate, 1, smoke.PARAMETERS),
    "liquid": (liquid.simulate, 1, liquid.PARAMETERS),
    "waves": (waves.simulate, 1, waves.PARAMETERS),
    "shapes": (shapes.simulate, 1, shapes.PARAMETERS),
    "noise": (noise.simulate, None, noise.PARAMETERS),  # 1 or 3 channels
    "blobs": (blobs.simulate, 1, blobs.PARAMETERS),
}
FRAMES = 11


@dataclass(frozen=True)
class SimulationSequence:
    """``frames`` float32 [F, C, n, n, n] of one family; parameter ``values`` [F] grow with the frame index."""

    family: str
    seed: int
    frames: np.ndarray
    parameter: str
    values: np.ndarray

    @property
    def size(self) -> int:
        return int(self.frames.shape[-1])


def family_names() -> list[str]:
    """Names of the simulation families."""
    return list(FAMILIES)


def _family_seed(family: str, seed: int) -> int:
    # a stable per-family offset so seed 0 of two families gives unrelated random draws
    digest = hashlib.sha256(f"{family}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def generate_sequence(family: str, seed: int, size: int = 64, frames: int = FRAMES,
                      parameter: str | None = None) -> SimulationSequence:
    """Simulate one seeded sequence of ``family`` on a ``size``^3 grid (the varied parameter drawn unless given)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown simulation family {family!r}; one of {', '.join(FAMILIES)}")
    if size < 8 or size % 2:
        raise ValueError(f"grid size must be even and >= 8, got {size}")
    simulate = FAMILIES[family][0]
    rng = np.random.default_rng(_family_seed(family, seed))
    with torch.no_grad():
        data, param, values = simulate(rng, size, frames, parameter)
    data = np.ascontiguousarray(data, dtype=np.float32)
    if not np.isfinite(data).all():
        raise FloatingPointError(f"{family} seed {seed}: the simulation produced non-finite values")
    return SimulationSequence(family, int(seed), data, param, np.asarray(values, dtype=np.float64))

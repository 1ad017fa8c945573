"""Small analytic volumes for the field tests."""

from __future__ import annotations

import numpy as np
import pytest

from core.volume import Volume


def analytic_volume(n: int = 16, channels: int = 1) -> Volume:
    c = np.linspace(-1.0, 1.0, n)
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    base = np.sin(1.5 * x) * np.cos(1.2 * y) + 0.4 * z**2 + 2.0
    data = base[None] if channels == 1 else np.stack([base, 0.5 * base + z, x * y])
    return Volume(data.astype(np.float32), name=f"analytic{n}")


@pytest.fixture
def volume16() -> Volume:
    return analytic_volume(16)


TINY_APMGSRN = {"n_grids": 4, "n_features": 2, "grid_shape": [8, 8, 8], "width": 32}


def tiny_fit(iterations: int = 40, points: int = 2048, **extra):
    cfg = {"model": "apmgsrn", "size": "small", "model_options": dict(TINY_APMGSRN), "iterations": iterations,
           "points": points, "log_every": 5, "density_points": 512, "evaluate": False, "chunk": 700}
    cfg.update(extra)
    return cfg

"""Moving and deforming signed-distance shapes (spheres, rounded boxes, tori, capsules) rendered as soft solids."""

from __future__ import annotations

import math

import numpy as np
import torch

from core.training.simulations.grid import coordinates, frame_perturbations, random_field

PARAMETERS = ("translation", "rotation", "scale", "morph")
KINDS = ("sphere", "box", "torus", "capsule")


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _axis_rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def sdf(kind: str, p: torch.Tensor, size: float) -> torch.Tensor:
    """Signed distance of a shape centred at the origin; p is [..., 3] in the shape's frame."""
    if kind == "sphere":
        return p.norm(dim=-1) - size
    if kind == "box":
        half = torch.tensor([size, 0.7 * size, 0.5 * size])
        q = p.abs() - half
        return q.clamp(min=0).norm(dim=-1) + q.amax(dim=-1).clamp(max=0) - 0.1 * size
    if kind == "torus":
        ring = torch.sqrt(p[..., 0] ** 2 + p[..., 2] ** 2) - size
        return torch.sqrt(ring**2 + p[..., 1] ** 2) - 0.35 * size
    if kind == "capsule":
        seg = p.clone()
        seg[..., 0] = p[..., 0] - p[..., 0].clamp(-size, size)
        return seg.norm(dim=-1) - 0.4 * size
    raise ValueError(f"unknown shape {kind!r}; one of {KINDS}")


def _smooth_union(a: torch.Tensor, b: torch.Tensor, k: float = 0.2) -> torch.Tensor:
    h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def simulate(rng: np.random.Generator, n: int, frames: int,
             parameter: str | None = None) -> tuple[np.ndarray, str, np.ndarray]:
    """One shape sequence; translation, rotation angle, scale or morph weight grows with the frame index."""
    parameter = parameter or str(rng.choice(PARAMETERS))
    z, y, x = coordinates(n)
    pts = torch.stack((x, y, z), dim=-1)  # shapes live in (x, y, z) world coordinates
    count = int(rng.integers(1, 4))
    shapes = []
    for _ in range(count):
        shapes.append({
            "kind": str(rng.choice(KINDS)), "other": str(rng.choice(KINDS)),
            "centre": rng.uniform(1.8, 2.0 * math.pi - 1.8, 3), "size": float(rng.uniform(0.45, 1.0)),
            "rot": _rotation(rng), "dir": rng.standard_normal(3), "axis": rng.standard_normal(3),
        })
    step = {"translation": rng.uniform(0.04, 0.1), "rotation": rng.uniform(0.05, 0.15),
            "scale": rng.uniform(0.02, 0.05), "morph": 0.1}
    if parameter not in PARAMETERS:
        raise ValueError(f"shapes vary one of {PARAMETERS}, not {parameter!r}")
    softness = float(rng.uniform(0.08, 0.3))  # in box units, so the look does not depend on the grid size
    texture = float(rng.uniform(0.0, 0.15)) * random_field(rng, n, slope=2.0, k_high=8.0)[0]
    values = np.arange(frames, dtype=np.float64) * step[parameter]
    strength = float(rng.uniform(0.0, 0.12))  # per-frame noise on top of the shared texture
    jitter = strength * frame_perturbations(rng, n, frames, slope=1.0, k_high=10.0)[:, 0]
    out = []
    for k, t in enumerate(values):
        dist = None
        for s in shapes:
            d = s["dir"] / np.linalg.norm(s["dir"])
            centre = s["centre"] + (t * d if parameter == "translation" else 0.0)
            rot = s["rot"] @ (_axis_rotation(s["axis"], t) if parameter == "rotation" else np.eye(3))
            size = s["size"] * (1.0 + t if parameter == "scale" else 1.0)
            local = (pts - torch.tensor(centre, dtype=torch.float32)) @ torch.tensor(rot, dtype=torch.float32)
            d_shape = sdf(s["kind"], local, size)
            if parameter == "morph":
                d_shape = (1.0 - t) * d_shape + t * sdf(s["other"], local, size)
            dist = d_shape if dist is None else _smooth_union(dist, d_shape)
        solid = 0.5 * (1.0 - torch.tanh(dist / softness))
        out.append(solid + texture + jitter[k])
    return torch.stack(out)[:, None].numpy(), parameter, values

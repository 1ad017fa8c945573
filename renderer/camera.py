"""The orbit camera shared by every rendering path (GL view, torch ray-marcher, offline export).

World frame (the same for a Volume and a NeuralField):

* The data box is centred at the origin. Its edges span ``shape × spacing`` in (x, y, z) =
  (W, H, D) order, scaled so that the longest side is 2 (``box_half_extents``): a 64³ volume and
  its 128³ version of the same domain render identically and one camera fits both views.
  The box is the *voxel-edge* box (vispy's convention); the normalised field coordinates
  ([-1, 1] at the first/last voxel *centres*) are ``world / half * n / (n - 1)``.
* z is up (the D axis; the demo plume rises along it).

Camera (angles in degrees):

* ``eye = target + distance · (sin p · sin a, −sin p · cos a, cos p)`` with a = azimuth, p = polar.
  azimuth 0, polar 90 looks along +y at the x–z plane (x to the right, z up); polar 0 looks down
  the −z axis (x right, y up). Increasing azimuth moves the camera to the right around z.
* right = (cos a, sin a, 0), forward = (target − eye)/|…|, up = right × forward (defined for every
  polar angle, also at the poles).
* ``fov`` is the full perspective angle across the *smaller* image side, so the volume fits
  whatever the aspect ratio. ``fov == 0`` is orthographic, framed like the default 45° view at
  the target: the smaller side spans ``2 · distance · tan(22.5°)`` world units.
* Rays go through pixel centres; row 0 is the top of the image.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

DEFAULT_FOV = 45.0
# (azimuth, polar) whose eye looks along each world axis: eye offset = −direction
AXIS_VIEWS = {"+x": (270.0, 90.0), "-x": (90.0, 90.0), "+y": (0.0, 90.0), "-y": (180.0, 90.0),
              "+z": (0.0, 180.0), "-z": (0.0, 0.0)}
ORTHO_REFERENCE_FOV = 45.0


def box_half_extents(
    shape: tuple[int, int, int], spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> np.ndarray:
    """Half extents (x, y, z) of the world box of a [D, H, W] grid: longest side 2."""
    d, h, w = (int(n) for n in shape)
    sz, sy, sx = (float(s) for s in spacing)
    ext = np.array([w * sx, h * sy, d * sz], dtype=np.float64)
    return ext / ext.max()


def world_to_field(points: np.ndarray, half: np.ndarray, shape: tuple[int, int, int] | None) -> np.ndarray:
    """Map world points [N, 3] (x, y, z) to normalised field coordinates (-1/+1 at voxel centres)."""
    p = np.asarray(points, dtype=np.float64) / half
    if shape is not None:
        n = np.array([shape[2], shape[1], shape[0]], dtype=np.float64)
        p = p * n / (n - 1.0)
    return p


@dataclass(frozen=True)
class OrbitCamera:
    """Azimuth/polar/distance orbit about a target, with a field of view (0 = orthographic)."""

    azimuth: float = 30.0
    polar: float = 60.0
    distance: float = 5.0
    target: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0))
    fov: float = DEFAULT_FOV

    def __post_init__(self) -> None:
        t = tuple(float(v) for v in self.target)
        if len(t) != 3:
            raise ValueError(f"camera target must be three numbers (x, y, z), got {self.target!r}")
        object.__setattr__(self, "target", t)
        object.__setattr__(self, "azimuth", float(self.azimuth) % 360.0)
        object.__setattr__(self, "polar", min(max(float(self.polar), 0.0), 180.0))
        if not self.distance > 0:
            raise ValueError(f"camera distance must be positive, got {self.distance}")
        object.__setattr__(self, "distance", float(self.distance))
        if not 0.0 <= self.fov < 179.0:
            raise ValueError(f"camera fov must be in [0, 179) degrees (0 = orthographic), got {self.fov}")
        object.__setattr__(self, "fov", float(self.fov))

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        d = asdict(self)
        d["target"] = list(self.target)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OrbitCamera:
        """Inverse of ``to_dict`` (unknown keys are rejected, missing ones take defaults)."""
        known = {"azimuth", "polar", "distance", "target", "fov"}
        extra = set(data) - known
        if extra:
            raise ValueError(f"unknown camera keys {sorted(extra)}; expected {sorted(known)}")
        return cls(**{k: (tuple(v) if k == "target" else v) for k, v in data.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> OrbitCamera:
        return cls.from_dict(json.loads(text))

    def evolve(self, **changes: Any) -> OrbitCamera:
        """A copy with some parameters changed."""
        return replace(self, **changes)

    # ------------------------------------------------------------------ geometry
    @property
    def orthographic(self) -> bool:
        return self.fov == 0.0

    def eye(self) -> np.ndarray:
        a, p = math.radians(self.azimuth), math.radians(self.polar)
        offset = np.array([math.sin(p) * math.sin(a), -math.sin(p) * math.cos(a), math.cos(p)])
        return np.asarray(self.target) + self.distance * offset

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right, up, forward) unit vectors in world coordinates."""
        a = math.radians(self.azimuth)
        right = np.array([math.cos(a), math.sin(a), 0.0])
        forward = np.asarray(self.target) - self.eye()
        forward /= np.linalg.norm(forward)
        up = np.cross(right, forward)
        up /= np.linalg.norm(up)
        return right, up, forward

    def view_matrix(self) -> np.ndarray:
        """4×4 world → camera (column-vector convention; camera looks down −z)."""
        right, up, forward = self.basis()
        m = np.eye(4)
        m[0, :3], m[1, :3], m[2, :3] = right, up, -forward
        m[:3, 3] = -m[:3, :3] @ self.eye()
        return m

    def half_extent_at_target(self) -> float:
        """Half of the smaller image side, in world units, in the plane through the target."""
        fov = self.fov if self.fov > 0 else ORTHO_REFERENCE_FOV
        return self.distance * math.tan(math.radians(fov) / 2.0)

    def screen_half_extents(self, width: int, height: int) -> tuple[float, float]:
        """(half width, half height) of the view at unit depth (perspective) or in world units (ortho)."""
        s = math.tan(math.radians(self.fov) / 2.0) if self.fov > 0 else self.half_extent_at_target()
        if width >= height:
            return s * width / height, s
        return s, s * height / width

    def clip_planes(self, scene_radius: float = math.sqrt(3.0)) -> tuple[float, float]:
        """Near/far distances that enclose a sphere of ``scene_radius`` about the origin."""
        reach = float(np.linalg.norm(self.eye())) + scene_radius
        return max(1e-3 * self.distance, 1e-3), 2.0 * reach + 1.0

    def projection_matrix(self, width: int, height: int, scene_radius: float = math.sqrt(3.0)) -> np.ndarray:
        """4×4 camera → clip (OpenGL convention, column vectors)."""
        sx, sy = self.screen_half_extents(width, height)
        n, f = self.clip_planes(scene_radius)
        m = np.zeros((4, 4))
        if self.orthographic:
            m[0, 0], m[1, 1] = 1.0 / sx, 1.0 / sy
            m[2, 2], m[2, 3] = -2.0 / (f - n), -(f + n) / (f - n)
            m[3, 3] = 1.0
        else:
            m[0, 0], m[1, 1] = 1.0 / sx, 1.0 / sy
            m[2, 2], m[2, 3] = -(f + n) / (f - n), -2.0 * f * n / (f - n)
            m[3, 2] = -1.0
        return m

    def rays(self, width: int, height: int, xs: np.ndarray | None = None,
             ys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ray origins and unit directions [N, 3] through pixel centres (all pixels, row-major, or the given ones)."""
        if xs is None or ys is None:
            yy, xx = np.mgrid[0:height, 0:width]
            xs, ys = xx.ravel(), yy.ravel()
        xs = np.asarray(xs, dtype=np.float64)
        ys = np.asarray(ys, dtype=np.float64)
        sx, sy = self.screen_half_extents(width, height)
        u = ((xs + 0.5) / width * 2.0 - 1.0) * sx
        v = (1.0 - (ys + 0.5) / height * 2.0) * sy
        right, up, forward = self.basis()
        eye = self.eye()
        if self.orthographic:
            origins = eye[None] + u[:, None] * right[None] + v[:, None] * up[None]
            dirs = np.broadcast_to(forward, origins.shape).copy()
        else:
            dirs = forward[None] + u[:, None] * right[None] + v[:, None] * up[None]
            dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
            origins = np.broadcast_to(eye, dirs.shape).copy()
        return origins, dirs

    # ------------------------------------------------------------------ interaction helpers
    def orbited(self, d_azimuth: float, d_polar: float) -> OrbitCamera:
        return self.evolve(azimuth=self.azimuth + d_azimuth, polar=min(max(self.polar + d_polar, 0.0), 180.0))

    def zoomed(self, factor: float) -> OrbitCamera:
        return self.evolve(distance=min(max(self.distance * factor, 0.05), 1000.0))

    def looking_along(self, direction: str) -> OrbitCamera:
        """This camera turned to look along a world axis (``"+x"``, ``"-x"``, … ``"-z"``) at the box centre.

        Distance and field of view stay. Along ±x and ±y, z is up on the screen; along −z (from
        above) y is up; along +z (from below) −y is up.
        """
        try:
            azimuth, polar = AXIS_VIEWS[direction]
        except KeyError:
            raise ValueError(f"view direction must be one of {sorted(AXIS_VIEWS)}, got {direction!r}") from None
        return self.evolve(azimuth=azimuth, polar=polar, target=(0.0, 0.0, 0.0))

    def panned(self, dx: float, dy: float) -> OrbitCamera:
        """Move the target by (dx, dy) fractions of the view's half extent, in the image plane."""
        right, up, _ = self.basis()
        s = self.half_extent_at_target()
        t = np.asarray(self.target) + (dx * right + dy * up) * s
        return self.evolve(target=tuple(float(v) for v in t))


def fit_distance(half: np.ndarray, fov: float = DEFAULT_FOV, margin: float = 1.1) -> float:
    """Distance at which a box with these half extents fits the smaller image side."""
    radius = float(np.linalg.norm(half)) * margin
    f = fov if fov > 0 else ORTHO_REFERENCE_FOV
    return radius / math.sin(math.radians(f) / 2.0)
